"""The USSD importer (``cic_ussd``): every user registers itself by dialling the gateway.

Per user, a USSD session walks the registration menus with the user's own data: language
(seeded, :func:`~cic_seeding.generate.keys.preferred_language`), given and family name, gender,
location, and the seeded PIN twice (:func:`~cic_seeding.ussd.pins.seeded_pin`). Many sessions
run at once (``ussd_concurrency``). The gateway creates the custodial account in the
background and writes the user's phone pointer to the metadata server; the importer learns
the new address from that pointer, polling with bounded exponential backoff up to
``ussd_max_wait`` (never forever), and confirms the user once the AccountsIndex has the
address. The person record then goes under ``new/`` keyed by the new address.

A rerun first looks the phone pointers up (:meth:`done_on_chain`): a user registered before
is found, not registered again; one whose registration is still pending gets the gateway's
"still being created" and is waited for. The opening balance comes from the syncer
(``cic-seed sync cic_ussd``), exactly once per user, as for ``cic_eth``.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from eth_utils import is_address, to_checksum_address

from cic_seeding.chain.connect import checked_chain, connect
from cic_seeding.chain.registry import ACCOUNTS_INDEX, CicNetwork
from cic_seeding.config import Settings
from cic_seeding.datadir import UserRow
from cic_seeding.errors import CicSeedError, ImporterError
from cic_seeding.generate.keys import preferred_language
from cic_seeding.importers._records import record_problem, write_new_records
from cic_seeding.importers.base import Importer, Outcome, Submission
from cic_seeding.meta.client import MetaClient
from cic_seeding.records.pointers import phone_pointer
from cic_seeding.records.vcard import decode_vcard
from cic_seeding.remote import USSD_GATEWAY, poll
from cic_seeding.state import norm
from cic_seeding.ussd.client import Screen, UssdClient
from cic_seeding.ussd.pins import seeded_pin
from cic_seeding.ussd.texts import LANGUAGES, text

log = logging.getLogger(__name__)

GENDER_CHOICE = {"male": "1", "female": "2", "other": "3"}
LANGUAGE_CHOICE = {"en": "1", "sw": "2"}
#: Screens a session of an already registered phone opens with, in every language.
REGISTERED_SCREENS = frozenset(text(key, lang) for key in ("pending", "locked", "new_pin", "main")
                               for lang in LANGUAGES)
#: The prompts of the registration menus after each input but the last, in order.
REGISTRATION_PROMPTS = ("given_name", "family_name", "gender", "location", "new_pin",
                        "confirm_pin")


def registration_screens(language: str) -> list[frozenset[Screen]]:
    """The screens a registration in ``language`` may show after each input, in order."""
    steps = [frozenset({Screen(False, text(p, language))}) for p in REGISTRATION_PROMPTS]
    return [*steps, frozenset({Screen(True, text("registered", language)),
                               Screen(True, text("pending", language))})]


#: Backoff of the phone-pointer polling: first delay and the largest one, in seconds.
POLL_FIRST, POLL_MAX = 0.1, 2.0


def registration_inputs(doc: Mapping[str, Any], seed: int, index: int) -> list[str]:
    """What user ``index`` types into the registration menus, in order."""
    card = decode_vcard(doc["vcard"])
    pin = seeded_pin(seed, index)
    return [LANGUAGE_CHOICE[preferred_language(seed, index)], card.given, card.family,
            GENDER_CHOICE.get(str(doc.get("gender")), "3"),
            str((doc.get("location") or {}).get("area_name", "")), pin, pin]


class CicUssdImporter(Importer):
    """Registers every generated user through the USSD gateway's menus."""

    name = "cic_ussd"
    custody = "custodial"
    ussd_accounts = True
    service = USSD_GATEWAY
    in_flight = 3

    def __init__(self, settings: Settings, *, network: CicNetwork | None = None,
                 client: UssdClient | None = None, meta: MetaClient | None = None,
                 **kw: Any) -> None:
        super().__init__(settings, **kw)
        from cic_seeding.importers.meta import meta_client

        self.network = network or connect(settings, signer=False)
        self.client = client or UssdClient.from_settings(settings)
        self.meta = meta or meta_client(settings)
        self.chain = checked_chain(self.network, self.settings)  # first: another chain misleads
        self.index = self.network.accounts_index
        self.timeout = settings.ussd_max_wait
        self.concurrency = max(1, settings.ussd_concurrency)
        self.seed = self.data.manifest().seed
        self._problems: dict[str, str] = {}  # address -> why its session failed

    # -- primitives ----------------------------------------------------------------------
    def begin(self) -> None:
        """The gateway answers; the syncer's cursor starts here."""
        if not self.client.healthy():
            raise ImporterError(f"{self.name}: the USSD gateway {self.client.url} does not "
                                "answer", hint="start one with `cic-seed devnet up --ussd` or "
                                "set ussd_url (CIC_USSD_URL)")
        self.network.check_chain_id(self.chain)
        self.store.init_cursor(self.name, str(self.chain), self.network.client.head())

    def prepare(self, users: Sequence[UserRow]) -> Mapping[str, str]:
        return {u.address: reason for u in users if (reason := record_problem(self.data, u))}

    def sends(self, users: Sequence[UserRow]) -> list[str]:
        return [f"{len(users)} USSD registration sessions"]

    def done_on_chain(self, users: Sequence[UserRow]) -> Mapping[str, str | None]:
        """Users whose phone pointer names an address the AccountsIndex has."""
        targets = self._pointers(users)
        registered = self._registered(list(targets.values()))
        return {a: to_checksum_address(t) for a, t in targets.items() if t in registered}

    def submit(self, users: Sequence[UserRow]) -> list[Submission]:
        with ThreadPoolExecutor(min(self.concurrency, len(users)),
                                thread_name_prefix=f"{self.name}-session") as pool:
            refs = list(pool.map(self._register, users))
        return [Submission(u.address, ref) for u, ref in zip(users, refs, strict=True)]

    def outcomes(self, submissions: Sequence[Submission]) -> list[Outcome]:
        deadline = time.monotonic() + self.timeout
        waiting = [s for s in submissions if s.address not in self._problems]
        rows = [UserRow(0, s.address, s.ref.split("|", 1)[1]) for s in waiting]
        targets = self._wait_pointers(rows, deadline)
        registered = self._wait_registered(list(targets.values()), deadline)
        out = []
        for s in submissions:
            problem = self._problems.pop(s.address, None)
            target = targets.get(norm(s.address))
            phone = s.ref.split("|", 1)[1]
            if problem is not None:
                out.append(Outcome(s.address, False, reason=problem))
            elif target is None:
                out.append(Outcome(s.address, False, reason=(
                    f"the gateway took the registration of {phone} (session "
                    f"{s.ref.split('|')[0]}) but no phone pointer appeared on the metadata "
                    f"server within {self.timeout:.0f}s; is the custodial engine running? "
                    "rerun to resume")))
            elif target not in registered:
                out.append(Outcome(s.address, False, reason=(
                    f"account {target} of {phone} is not in the AccountsIndex after "
                    f"{self.timeout:.0f}s; the engine's queue keeps trying; rerun to confirm")))
            else:
                out.append(Outcome(s.address, True, to_checksum_address(target)))
        return out

    def finish(self, done: Sequence[tuple[UserRow, str]]) -> None:
        write_new_records(self.data, self.chain,
                          ((u.address, to_checksum_address(t)) for u, t in done))

    def close(self) -> None:
        self.client.close()
        self.meta.close()
        super().close()

    # -- helpers -------------------------------------------------------------------------
    def _register(self, user: UserRow) -> str:
        """Walk the registration of one user; returns ``session|phone``. A session that
        goes off the expected path is recorded in ``_problems``."""
        session = uuid.uuid4().hex
        ref = f"{session}|{user.phone}"
        try:
            doc = json.loads(self.data.src.get(user.address))
            inputs = registration_inputs(doc, self.seed, user.index)
            opening = self.client.request(session, user.phone, "")
            if opening != Screen(False, text("choose_language")):
                if opening.text not in REGISTERED_SCREENS:
                    self._problems[user.address] = (
                        f"the USSD gateway {self.client.url} opened the session of "
                        f"{user.phone} with an unexpected screen {str(opening)[:200]!r}; "
                        "expected the language menu (a new user) or the PIN prompt, main menu "
                        "or 'still being created' (a registered one): is CIC_USSD_URL a CIC "
                        "USSD gateway?")
                return ref  # registered before (pending or active): the pointer will tell
            expected = registration_screens(preferred_language(self.seed, user.index))
            for i, wanted in enumerate(expected):
                screen = self.client.request(session, user.phone, "*".join(inputs[:i + 1]))
                if screen not in wanted:  # stop: more input would answer another question
                    self._problems[user.address] = (
                        f"the registration session of {user.phone} went off the expected path "
                        f"after {i + 1} of {len(inputs)} inputs: the gateway showed "
                        f"{str(screen)[:200]!r}, expected {str(min(wanted, key=str))[:80]!r}")
                    break
        except CicSeedError as exc:
            self._problems[user.address] = f"USSD session of {user.phone}: {exc}"
        return ref

    def _pointers(self, users: Sequence[UserRow]) -> dict[str, str]:
        """``{address: target}`` (0x lower) of the users with a phone pointer."""
        by_pointer = {phone_pointer(u.phone): norm(u.address) for u in users}
        found = self.meta.get_many(by_pointer, concurrency=min(16, max(1, len(by_pointer))))
        out = {}
        for pointer, doc in found.items():
            if isinstance(doc, str) and is_address(doc):
                out[by_pointer[pointer]] = doc.lower()
        return out

    def _wait_pointers(self, users: Sequence[UserRow], deadline: float) -> dict[str, str]:
        found: dict[str, str] = {}

        def all_found() -> bool:
            todo = [u for u in users if norm(u.address) not in found]
            if todo:
                found.update(self._pointers(todo))
            return len(found) == len(users)

        self._poll(all_found, deadline)
        return found

    def _registered(self, targets: Sequence[str]) -> set[str]:
        if not targets:
            return set()
        have = self.network.client.call_many([(self.index, ACCOUNTS_INDEX.fn("have"), (t,))
                                              for t in targets])
        return {t for t, h in zip(targets, have, strict=True) if h is True}

    def _wait_registered(self, targets: Sequence[str], deadline: float) -> set[str]:
        found: set[str] = set()

        def all_found() -> bool:
            found.update(self._registered([t for t in targets if t not in found]))
            return len(found) == len(targets)

        self._poll(all_found, deadline)
        return found

    def _poll(self, done: Callable[[], bool], deadline: float) -> None:
        """``done()`` until it is true or ``deadline`` passes, with bounded exponential
        backoff in between; KeyboardInterrupt when the run is stopped meanwhile."""
        if not poll(done, until=deadline, first=POLL_FIRST, cap=POLL_MAX, stop=self.stop) \
                and self.stop.is_set():
            raise KeyboardInterrupt
