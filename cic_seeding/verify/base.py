"""The check plugin base class and what a check is given: users, a context, verdicts.

A check implements one method, :meth:`Check.check`, on a *batch* of users and answers with one
:class:`Verdict` per user. The base class (and the runner) own the rest: users not imported
fail every check that needs a target, batches are sized once, every user is checked once.

Write a third-party check like this and register it under the ``cic_seeding.checks``
entry-point group (the entry-point name must equal the check's ``id``)::

    class Nonce(ChainCheck):
        id = "nonce"
        description = "the user has sent at least one transaction"
        groups = ("chain",)

        def check(self, users):
            ...
            return {u.address: Verdict.passed() if ... else
                    Verdict.failed("the user never sent a transaction", f"nonce {n}")
                    for u in users}

A failed verdict's ``reason`` is one sentence that every user failing the same way shares (the
reports group users by it), its ``detail`` what is particular to this user (amounts, paths), its
``error`` the exception behind it, if any. A check that does not concern some users (custodial
keys of sovereign users) says so in :meth:`Check.not_applicable_to` (all of the importer's
users) or :meth:`Check.not_applicable` (one user): *not applicable* is not a skip. A skip means
the check applies but could not run.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from cic_seeding.config import Settings
from cic_seeding.datadir import DataDir
from cic_seeding.errors import VerifyError
from cic_seeding.state import norm
from cic_seeding.state.base import UserState
from cic_seeding.verify.port import VerifyChain
from cic_seeding.verify.tolerance import Tolerance

#: Reason given for a user without an address on the target chain.
NOT_IMPORTED = "not imported: the importer gave it no address on the target chain"
#: Backends a check may need; ``--skip-custodial/--skip-metadata/--skip-ussd`` skip the last three.
BACKENDS = ("chain", "keystore", "state", "custodial", "meta", "ussd")
#: Verdict outcomes.
OK, FAILED, SKIPPED, NOT_APPLICABLE = "ok", "failed", "skipped", "not_applicable"
#: Custody of the users of an importer (``Importer.custody``).
SOVEREIGN, CUSTODIAL = "sovereign", "custodial"
#: The kinds of users a check may not concern (its not-applicable reasons).
SOVEREIGN_USERS, CUSTODIAL_USERS = "sovereign users", "custodial users"


@dataclass(frozen=True)
class ImportState:
    """What the state store says ``importer`` did: its users by (0x lower-case) address.

    ``location`` names the store (for messages); ``exists`` is False when there is no store at
    all (nothing was imported). ``custody`` is who holds the keys of the importer's users
    (``sovereign``, ``custodial``; None: unknown or not the importer's business), ``ussd`` True
    when the importer registers its users through the USSD gateway, and ``ussd_users`` the
    users some USSD importer (``ussd-pins`` ...) has in the store.
    """

    importer: str
    location: str
    users: dict[str, UserState] = field(default_factory=dict)
    exists: bool = True
    custody: str | None = SOVEREIGN
    ussd: bool = False
    ussd_users: frozenset[str] = frozenset()

    def on_ussd(self, address: str) -> bool:
        """Whether the user (0x lower-case data-directory address) was registered (or its
        registration attempted) through the USSD gateway."""
        return self.ussd or address in self.ussd_users

    @property
    def known(self) -> int:
        """Users the importer has in the store (imported or not)."""
        return len(self.users)

    def target(self, address: str) -> str | None:
        state = self.users.get(address)
        return norm(state.target) if state is not None and state.target else None


@dataclass(frozen=True, slots=True)  # one per user (or tx): no __dict__ each
class VerifyUser:
    """One user of the data directory, as the checks see it.

    ``address`` is the generated (data-directory) address and ``target`` the address on the
    target chain (None: the importer has not imported the user); both 0x lower-case.
    ``opening_balance`` is from balances.csv in the dataset's smallest unit (None: no row).
    ``import_status`` is the importer's state of the user (``confirmed``, ``submitted``,
    ``pending``, ``failed``; None: the state store does not know the user) and
    ``import_reason`` why it failed, if it did. ``balance_problem`` says what is wrong with the
    user's balances.csv row (file, line, field) when it cannot be read: the user is quarantined
    (its balance check fails with this), the others are verified as usual.
    """

    index: int
    address: str
    target: str | None
    opening_balance: int | None
    phone: str = ""
    import_status: str | None = None
    import_reason: str | None = None
    balance_problem: str | None = None


@dataclass(frozen=True, slots=True)  # one per user (or tx): no __dict__ each
class Verdict:
    """One check's answer for one user: passed, failed, skipped or not applicable.

    A failure's ``reason`` is a sentence shared by every user failing the same way, ``detail``
    this user's particulars and ``error`` the exception behind it (``Class: text``), if any.
    """

    outcome: str  # OK | FAILED | SKIPPED | NOT_APPLICABLE
    reason: str = ""
    detail: str = ""
    error: str = ""

    @classmethod
    def passed(cls) -> Verdict:
        return _PASSED

    @classmethod
    def failed(cls, reason: str, detail: str = "",
               error: BaseException | str | None = None) -> Verdict:
        if isinstance(error, BaseException):
            error = f"{type(error).__name__}: {error}"
        return cls(FAILED, reason, detail, error or "")

    @classmethod
    def skipped(cls, reason: str) -> Verdict:
        """The check applies to the user but could not run (say why)."""
        return cls(SKIPPED, reason)

    @classmethod
    def not_applicable(cls, reason: str) -> Verdict:
        """The check does not concern this user (say which kind of user it is)."""
        return cls(NOT_APPLICABLE, reason)


_PASSED = Verdict(OK)


@dataclass(frozen=True)
class CheckContext:
    """What every check may use; built once per run.

    ``chain`` is None when no selected check needs the ``chain`` backend. ``faucet_amount`` was
    read once from the faucet (0 without a chain). ``dataset_decimals`` is the manifest's,
    ``token_decimals`` the chain's (the manifest's without a chain). ``imports`` is what the
    state store says the importer did. ``shared`` holds per-run resources the checks of one
    family share (one metadata client for the four metadata checks), keyed by family.
    """

    settings: Settings
    data: DataDir
    chain: VerifyChain | None = None
    faucet_amount: int = 0
    dataset_decimals: int = 0
    token_decimals: int = 0
    balance_adjust: Tolerance | None = None
    imports: ImportState | None = None
    shared: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


class Check(abc.ABC):
    """A verification run once per user, on batches of users.

    Subclasses set ``id``, ``description`` (one line), ``groups`` and ``backends``, and
    implement :meth:`check`. :meth:`close` releases what the check holds (pools, sessions).
    A check that cannot run without some configuration says why in :meth:`unavailable`; one
    that finds failures of the run as a whole (not of one user) reports them from
    :meth:`finish`.
    """

    id: ClassVar[str]
    description: ClassVar[str]
    groups: ClassVar[tuple[str, ...]] = ()
    backends: ClassVar[tuple[str, ...]] = ()
    #: Users without a target fail with "not imported" before :meth:`check` sees them.
    needs_target: ClassVar[bool] = False

    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx

    @classmethod
    def unavailable(cls, settings: Settings) -> str | None:
        """Why this check cannot run with ``settings`` (None: it can).

        A check selected by default that cannot run is reported as skipped with this reason;
        one asked for by name (``--include``) is a configuration error.
        """
        return None

    @classmethod
    def not_applicable_to(cls, imports: ImportState) -> str | None:
        """Why this check concerns none of the users of the importer ``imports`` describes,
        naming the kind of users (``"sovereign users"``); None: it may concern them.

        Such a check is reported as not applicable: not run, not a skip.
        """
        return None

    def not_applicable(self, user: VerifyUser) -> str | None:
        """Why this check does not concern ``user`` (the kind of user it is); None: it does.
        Asked before :meth:`check` sees the user."""
        return None

    @abc.abstractmethod
    def check(self, users: Sequence[VerifyUser]) -> Mapping[str, Verdict]:
        """A verdict per user of ``users``, keyed by ``user.address``."""

    def verify(self, users: Sequence[VerifyUser]) -> dict[str, Verdict]:
        """Exactly one verdict per user of ``users``, keyed by ``user.address``.

        Raises VerifyError if :meth:`check` leaves a user without a verdict (a bug in the check).
        """
        verdicts: dict[str, Verdict] = {}
        todo = []
        for user in users:
            why = self.not_applicable(user)
            if why is not None:
                verdicts[user.address] = Verdict.not_applicable(why)
            elif self.needs_target and user.target is None:
                verdicts[user.address] = Verdict.failed(NOT_IMPORTED)
            else:
                todo.append(user)
        if not todo:
            return verdicts
        answers = self.check(todo)
        missing = [u.address for u in todo if u.address not in answers]
        if missing:
            raise VerifyError(f"check {self.id!r} gave no verdict for {len(missing)} of "
                              f"{len(todo)} users (first: {missing[0]})",
                              hint="this is a bug in the check; exclude it with --exclude "
                              f"{self.id}")
        verdicts.update((u.address, answers[u.address]) for u in todo)
        return verdicts

    def finish(self) -> list[str]:
        """Failures of the run as a whole, not tied to one user, after the last batch
        (default: none). Any makes the check (and the run) fail."""
        return []

    def close(self) -> None:
        """Release resources held between batches (default: nothing)."""
        return None


class ChainCheck(Check):
    """A check that reads the target chain through :attr:`chain` (users need a target)."""

    backends: ClassVar[tuple[str, ...]] = ("chain",)
    needs_target: ClassVar[bool] = True

    @property
    def chain(self) -> VerifyChain:
        if self.ctx.chain is None:
            raise VerifyError(f"check {self.id!r} needs a chain and none was connected",
                              hint="give --devnet DIR or -p RPC_URL -r REGISTRY")
        return self.ctx.chain

    def answer(self, answers: Mapping[str, int] | Mapping[str, bool], target: str,
               what: str) -> int:
        """``answers[target]``; VerifyError naming ``what`` if the chain left it out."""
        try:
            return int(answers[target])
        except KeyError:
            raise VerifyError(f"the chain gave no {what} for {target} (check {self.id!r})"
                              ) from None


def targets_of(users: Sequence[VerifyUser]) -> list[str]:
    """The target addresses of ``users`` that have one, in order."""
    return [u.target for u in users if u.target is not None]
