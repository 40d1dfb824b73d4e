"""The USSD checks: a session for the user's phone reaches the main menu (``ussd``), and the
seeded PIN opens the balance screen (``ussd_pins``).

Both speak the gateway's protocol (``ussd_url``, or a devnet started with ``--ussd``); without
one they are skipped unless asked for by name. A locked or pending account fails ``ussd``
with the gateway's own words. ``ussd_pins`` enters the PIN derived from the dataset's seed
(:func:`~cic_seeding.ussd.pins.seeded_pin`): a wrong one counts as a failed attempt at the
gateway, as any wrong PIN does.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from cic_seeding.config import Settings
from cic_seeding.errors import CicSeedError
from cic_seeding.ussd.client import Screen, UssdClient, ussd_unconfigured
from cic_seeding.ussd.pins import seeded_pin
from cic_seeding.ussd.texts import balance_prefixes, is_locked, main_menus
from cic_seeding.verify.base import Check, CheckContext, Verdict, VerifyUser

_SHARED = "ussd"


class UssdCheck(Check):
    id = "ussd"
    description = "a USSD session for the user's phone reaches the main menu of an active account"
    groups = ("ussd",)
    backends = ("ussd",)
    needs_target = True

    def __init__(self, ctx: CheckContext) -> None:
        super().__init__(ctx)
        client = ctx.shared.get(_SHARED)
        if not isinstance(client, UssdClient):
            client = ctx.shared[_SHARED] = UssdClient.from_settings(ctx.settings)
        self.client = client

    @classmethod
    def unavailable(cls, settings: Settings) -> str | None:
        return ussd_unconfigured(settings)

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
            return Verdict.failed(str(exc))
        if is_locked(screen.text):
            return Verdict.failed(_locked(user))
        if screen.end or screen.text not in main_menus():
            return Verdict.failed(f"a session for {user.phone} does not reach the main menu; "
                                  f"the gateway said {str(screen)[:160]!r}")
        return Verdict.passed()

    def close(self) -> None:
        self.client.close()


class UssdPinsCheck(UssdCheck):
    id = "ussd_pins"
    description = "the user's seeded PIN opens the balance screen over USSD"

    def _one(self, user: VerifyUser) -> Verdict:
        pin = seeded_pin(self.ctx.data.manifest().seed, user.index)
        try:
            screens = self._walk(user, ["1", pin])
        except CicSeedError as exc:
            return Verdict.failed(str(exc))
        last = screens[-1]
        if is_locked(last.text):
            return Verdict.failed(_locked(user))
        if len(screens) == 3 and last.end and last.text.startswith(balance_prefixes()):
            return Verdict.passed()
        return Verdict.failed(f"the seeded PIN of {user.phone} does not open the balance "
                              f"screen; the gateway said {str(last)[:160]!r}")


def _locked(user: VerifyUser) -> str:
    return (f"the USSD account of {user.phone} is locked (status 3: too many wrong PINs); "
            "reset it (status 4) to let the user set a new PIN")
