"""The USSD checks: a session for the user's phone reaches the main menu (``ussd``), and the
seeded PIN opens the balance screen (``ussd_pins``).

They concern the users registered through the gateway (an importer with ``ussd_accounts``:
``cic_ussd``, or ``ussd-pins`` / ``ussd-data`` for users made another way); for the others they
are not applicable. Both speak the gateway's protocol (``ussd_url``, or a devnet started with
``--ussd``); without one they are skipped unless asked for by name. A locked or pending account
fails ``ussd`` with the gateway's own words, and so does a main menu in another language than
the user's preferred one (:func:`~cic_seeding.generate.keys.preferred_language`). ``ussd_pins``
enters the PIN derived from the dataset's seed (:func:`~cic_seeding.ussd.pins.seeded_pin`): a
wrong one counts as a failed attempt at the gateway, as any wrong PIN does.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from cic_seeding.config import Settings
from cic_seeding.errors import CicSeedError
from cic_seeding.generate.keys import preferred_language
from cic_seeding.ussd.client import Screen, UssdClient, ussd_unconfigured
from cic_seeding.ussd.pins import seeded_pin
from cic_seeding.ussd.texts import LANGUAGES, balance_prefixes, is_locked, text
from cic_seeding.verify.base import (
    SOVEREIGN,
    SOVEREIGN_USERS,
    Check,
    CheckContext,
    ImportState,
    Verdict,
    VerifyUser,
)

_SHARED = "ussd"
NOT_ON_USSD = "users not registered through USSD"
REFUSED = "the USSD gateway refused the session"
LOCKED = "its USSD account is locked (too many wrong PINs; reset it to status 4)"


class UssdCheck(Check):
    id = "ussd"
    description = ("a USSD session for the user's phone reaches the main menu of an active "
                   "account, in the user's preferred language")
    groups = ("ussd",)
    backends = ("ussd",)
    needs_target = True

    def __init__(self, ctx: CheckContext) -> None:
        super().__init__(ctx)
        client = ctx.shared.get(_SHARED)
        if not isinstance(client, UssdClient):
            client = ctx.shared[_SHARED] = UssdClient.from_settings(ctx.settings)
        self.client = client
        self.seed = ctx.data.manifest().seed

    @classmethod
    def unavailable(cls, settings: Settings) -> str | None:
        return ussd_unconfigured(settings)

    @classmethod
    def not_applicable_to(cls, imports: ImportState) -> str | None:
        if imports.ussd or imports.ussd_users:
            return None
        return SOVEREIGN_USERS if imports.custody == SOVEREIGN else NOT_ON_USSD

    def not_applicable(self, user: VerifyUser) -> str | None:
        imports = self.ctx.imports
        return None if imports is None or imports.on_ussd(user.address) else NOT_ON_USSD

    def check(self, users: Sequence[VerifyUser]) -> Mapping[str, Verdict]:
        workers = max(1, min(16, self.ctx.settings.ussd_concurrency, len(users)))
        with ThreadPoolExecutor(workers, thread_name_prefix=f"check-{self.id}") as pool:
            return dict(zip([u.address for u in users], pool.map(self._one, users),
                            strict=True))

    def _walk(self, user: VerifyUser, inputs: Sequence[str]) -> list[Screen]:
        return self.client.session(user.phone, inputs, session_id=uuid.uuid4().hex)

    def _one(self, user: VerifyUser) -> Verdict:
        try:
            (screen,) = self._walk(user, [])
        except CicSeedError as exc:
            if exc.transient:
                raise  # the gateway is down: the runner skips the check
            return Verdict.failed(REFUSED, user.phone, exc)
        if is_locked(screen.text):
            return Verdict.failed(LOCKED, user.phone)
        language = preferred_language(self.seed, user.index)
        menus = {lang: text("main", lang) for lang in LANGUAGES}
        if not screen.end and screen.text == menus.get(language):
            return Verdict.passed()
        spoken = next((lang for lang, menu in menus.items() if menu == screen.text), None)
        if not screen.end and spoken is not None:
            return Verdict.failed("its USSD menus speak another language than the user's "
                                  "preferred one", f"{user.phone}: {spoken}, expected {language}")
        return Verdict.failed("a USSD session does not reach the main menu",
                              f"{user.phone}: the gateway said {str(screen)[:160]!r}")

    def close(self) -> None:
        self.client.close()


class UssdPinsCheck(UssdCheck):
    id = "ussd_pins"
    description = "the user's seeded PIN opens the balance screen over USSD"

    def _one(self, user: VerifyUser) -> Verdict:
        pin = seeded_pin(self.seed, user.index)
        try:
            screens = self._walk(user, ["1", pin])
        except CicSeedError as exc:
            if exc.transient:
                raise
            return Verdict.failed(REFUSED, user.phone, exc)
        last = screens[-1]
        if is_locked(last.text):
            return Verdict.failed(LOCKED, user.phone)
        if len(screens) == 3 and last.end and last.text.startswith(balance_prefixes()):
            return Verdict.passed()
        return Verdict.failed("the seeded PIN does not open the balance screen",
                              f"{user.phone}: the gateway said {str(last)[:160]!r}")
