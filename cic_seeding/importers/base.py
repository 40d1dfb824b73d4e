"""The importer base class: orchestration lives here, once, for every importer.

A subclass implements a few primitives on *batches* of users:

* :meth:`Importer.prepare` -- CPU work before sending (keyfiles ...), off the sending path;
* :meth:`Importer.done_on_chain` -- which users the target already has (a rerun never resends);
* :meth:`Importer.submit` -- send the registrations, return one :class:`Submission` per user;
* :meth:`Importer.outcomes` -- wait for them and say per user whether it worked;
* :meth:`Importer.finish` -- write what a confirmed user leaves behind (``new/`` records ...).

:meth:`Importer.run` walks the data directory, resumes by set difference against the state
store, batches, overlaps preparing the next batch with sending the current one, keeps several
batches in flight, retries transient errors with backoff, records every state transition and
reports progress.

Where the batches run is the importer's :meth:`Importer.executor`: by default here, in this
process; an importer may offer another executor (``import_executor``: the sovereign importer's
``celery`` executor, :mod:`cic_seeding.importers._celery_exec`, runs batches on Celery
workers). Any executor records what happened through :meth:`Importer.record_found`,
:meth:`Importer.record_submitted`, :meth:`Importer.record_confirmed` and
:meth:`Importer.record_failed`, so state, traces and progress stay the base's.
"""

from __future__ import annotations

import abc
import errno
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

from cic_seeding.config import Settings
from cic_seeding.datadir import DataDir, UserRow, dataset_settings
from cic_seeding.errors import DataDirError, UsageError
from cic_seeding.log import plural
from cic_seeding.outbox import counts_line
from cic_seeding.remote import RetryPolicy, Service
from cic_seeding.state import REGISTER, StateStore, Status, norm, open_state_store

from ._records import user_problems

log = logging.getLogger(__name__)
T = TypeVar("T")

Progress = Callable[[int], None]
#: ``(users done before this run, users done when it ends)``: where :attr:`Importer.progress`
#: counts from and up to, said once before its first report.
ProgressStart = Callable[[int, int], None]


@dataclass(frozen=True)
class Submission:
    """A registration on its way: ``ref`` is a transaction hash (or another handle)."""

    address: str
    ref: str
    target: str | None = None
    kind: str = REGISTER


@dataclass(frozen=True)
class Outcome:
    address: str
    ok: bool
    target: str | None = None
    reason: str | None = None
    #: The target had it before this run asked (an engine answering a repeated request with
    #: the account it made then): counted with what the run found, not with what it made.
    existing: bool = False


@dataclass
class ImportResult:
    """What one run did. ``ok`` is False when any user failed."""

    importer: str
    total: int = 0  # users in the data directory
    done_before: int = 0  # already confirmed in the state store when the run began
    found_on_chain: int = 0  # not confirmed in the store, but the target had them
    submitted: int = 0
    confirmed: int = 0
    failed: int = 0
    left: int = 0  # not attempted this run (--limit)
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (address, reason), first 100
    #: What the run's outbox did (sent, rebroadcast, replaced, bumped); empty for an importer
    #: that sends no transactions itself.
    transactions: dict[str, int] = field(default_factory=dict)
    #: Users the state store called confirmed that the target no longer held (imported again).
    reimported: int = 0
    #: Where ``found_on_chain`` users were found, for the summary line (None: nowhere to look;
    #: every user is written again, e.g. documents a server stores idempotently).
    found_where: str | None = "already on chain"

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def render_text(self) -> str:
        found = f" ({self.found_on_chain} {self.found_where})" if self.found_where else ""
        line = (f"{self.importer}: {self.confirmed + self.found_on_chain} users imported this run"
                f"{found}, {self.done_before} before, "
                f"{self.failed} failed, {self.left} left, {self.seconds:.1f}s")
        lines = [line]
        if self.reimported:
            lines.append(f"  {plural(self.reimported, 'user')} confirmed before were not on the "
                         "chain (rolled back?) and were imported again")
        if self.transactions:
            lines.append("  " + counts_line(self.transactions))
        lines += [f"  failed {a}: {r}" for a, r in self.failures[:10]]
        if self.failed > 10:
            lines.append(f"  ... and {self.failed - 10} more (see the state store)")
        return "\n".join(lines)


@dataclass
class ImportPlan:
    """What an import run would do (``cic-seed import --dry-run``): nothing is sent."""

    importer: str
    total: int = 0  # users in the data directory
    done_before: int = 0  # confirmed in the state store
    left: int = 0  # beyond --limit
    users: list[UserRow] = field(default_factory=list)  # would be imported
    refused: list[tuple[str, str]] = field(default_factory=list)  # (address, why)
    sends: list[str] = field(default_factory=list)  # what importing them sends, in words

    def render_text(self) -> str:
        lines = [f"{self.importer} (dry run, nothing sent): would import "
                 f"{plural(len(self.users), 'user')} of {self.total} "
                 f"({self.done_before} confirmed before, {len(self.refused)} refused, "
                 f"{self.left} left for a later run)"]
        if self.sends:
            lines.append("  sending at most " + ", ".join(self.sends))
        lines += [f"  refused {a}: {why}" for a, why in self.refused[:10]]
        if len(self.refused) > 10:
            lines.append(f"  ... and {len(self.refused) - 10} more")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"importer": self.importer, "total": self.total, "done_before": self.done_before,
                "left": self.left, "users": len(self.users), "refused": self.refused,
                "sends": self.sends}


class BatchExecutor(Protocol):
    """Runs an importer's batches somewhere else than in its own process."""

    def run_batches(self, todo: Sequence[UserRow], result: ImportResult) -> None:
        """Import ``todo`` (users not yet confirmed), recording through the importer."""


def data_dir_error(exc: OSError, data: DataDir) -> DataDirError:
    """One line for a file the data directory could not give or take (full, read-only ...)."""
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    fix = "free space" if full else "make the data directory writable"
    return DataDirError(f"data directory {data.root}: {exc.strerror}: {exc.filename}",
                        hint=f"{fix}, then rerun: the import resumes where it stopped")


class Importer(abc.ABC):
    """Base of every importer. Construct with settings; ``run()`` does the work."""

    #: The registry name (set by subclasses; the entry point name should match).
    name: ClassVar[str] = ""
    #: Batches submitted but not yet settled; more overlaps sending with confirming.
    in_flight: int = 3  # an instance may raise it (the eth importer on a devnet)
    #: First backoff delay in seconds when a transient error is retried.
    retry_base: float = 0.2
    #: The remote this importer writes to: words the hint when its retries are spent.
    service: ClassVar[Service | None] = None
    #: Values of ``import_executor`` this importer runs with ("local": :meth:`executor` None).
    executors: ClassVar[tuple[str, ...]] = ("local",)
    #: Who holds the keys of the users this importer registers: ``"sovereign"`` (the default:
    #: each user its own, in ``keystore/``), ``"custodial"`` (a custodial engine), or None
    #: (it registers no keys: it works on another importer's users). The verifier reads it
    #: to tell which checks apply (``local_key``, ``custodial_key``).
    custody: ClassVar[str | None] = "sovereign"
    #: Where a rerun finds users made before, for the summary ("already on chain"); None
    #: when it looks nowhere and writes every user again (idempotent writes).
    found_where: ClassVar[str | None] = "already on chain"
    #: True if the users this importer handles have an account at the USSD gateway (the
    #: verifier's ``ussd`` checks apply to them).
    ussd_accounts: ClassVar[bool] = False
    #: True if :meth:`done_on_chain` is cheap enough to ask for every user the state store
    #: calls confirmed at the start of a rerun: those the target no longer holds (a chain
    #: rolled back to an older state) are imported again.
    rechecks_confirmed: ClassVar[bool] = False

    def __init__(self, settings: Settings, *, store: StateStore | None = None,
                 data: DataDir | None = None, progress: Progress | None = None,
                 stop: threading.Event | None = None) -> None:
        settings = self.settings = dataset_settings(settings)
        self.data = data or DataDir(settings.data_dir)
        self._owns_store = store is None
        self.store = store or open_state_store(settings)
        self.progress = progress or (lambda n: None)
        #: Called once a run knows its users: a resumed run counts from those done before it.
        self.progress_start: ProgressStart = lambda done, total: None
        self.stop = stop or threading.Event()
        self.batch_size = max(1, settings.batch_size)
        if settings.import_executor not in self.executors:
            raise UsageError(
                f"importer {self.name!r} runs with executor {', '.join(self.executors)} only, "
                f"not {settings.import_executor!r}",
                hint="--executor celery runs the sovereign importer (eth) on Celery workers; "
                "drop --executor / CIC_IMPORT_EXECUTOR for this importer")

    # -- primitives ------------------------------------------------------------------------
    def prepare(self, users: Sequence[UserRow]) -> Mapping[str, str]:
        """CPU work for ``users`` before sending; returns ``{address: reason}`` of users that
        cannot be imported (a corrupt record ...). Runs in a helper thread, one batch ahead."""
        return {}

    @abc.abstractmethod
    def done_on_chain(self, users: Sequence[UserRow]) -> Mapping[str, str | None]:
        """``{address: target}`` of those ``users`` the target already holds."""

    @abc.abstractmethod
    def submit(self, users: Sequence[UserRow]) -> list[Submission]:
        """Send the registration of every user; one Submission per user sent."""

    @abc.abstractmethod
    def outcomes(self, submissions: Sequence[Submission]) -> list[Outcome]:
        """Wait for the submissions and report one Outcome each."""

    def finish(self, done: Sequence[tuple[UserRow, str]]) -> None:
        """Leave the traces of confirmed ``(user, target)`` pairs (records, files)."""
        return None

    def begin(self) -> None:
        """Called once before the first submission of a run (e.g. to place the sync cursor)."""
        return None

    def executor(self) -> BatchExecutor | None:
        """Where this run's batches go (None: here, :meth:`prepare` to :meth:`outcomes`)."""
        return None

    @classmethod
    def sync_users(cls, data: DataDir, store: StateStore) -> dict[str, str]:
        """Target address -> data-directory address of the users the syncer pays (0x lower).

        By default the users this importer confirmed; an importer whose targets are known
        in advance (sovereign: the generated address itself) returns them all.
        """
        return dict(store.targets(cls.name))

    @classmethod
    def payment_scheme(cls) -> str:
        """How the syncer pays this importer's registered users: ``"sovereign"`` (opening
        balance, faucet payout and gas gift from the main signer) or ``"custodial"`` (the
        opening balance as a transfer the custodial engine signs; faucet and gas came with the
        account)."""
        return "sovereign"

    def close(self) -> None:
        if self._owns_store:
            self.store.close()

    def sends(self, users: Sequence[UserRow]) -> list[str]:
        """What importing ``users`` would send, in words (``--dry-run``): by default one
        registration each."""
        return [plural(len(users), "registration")]

    def reopen(self, addresses: Sequence[str], why: str) -> int:
        """Make the next :meth:`run` import these data-directory users again (whatever the state
        store says): they are marked failed with ``why``. The run asks :meth:`done_on_chain`
        first, so a user the target still holds is found, not sent twice. Returns how many of
        them the store knew."""
        known = self.store.addresses(self.name)
        items = [(a, why) for a in addresses if norm(a) in known]
        self.store.mark_failed(self.name, items)
        return len(items)

    # -- orchestration ---------------------------------------------------------------------
    def dry_run(self, limit: int | None = None) -> ImportPlan:
        """What :meth:`run` would do now, sending nothing: the users the state store does not
        call confirmed, those refused for their records, and what importing the rest sends
        (the chain is not asked: a run may find some of them there, or, with
        :attr:`rechecks_confirmed`, miss some it confirmed)."""
        rows = list(self.data.users())
        done = self.store.addresses(self.name, [Status.CONFIRMED])
        todo, left, refused = self._todo(rows, done, limit)
        plan = ImportPlan(self.name, total=len(rows), left=left, users=todo, refused=refused,
                          done_before=len(rows) - len(todo) - len(refused) - left)
        plan.sends = self.sends(todo) if todo else []
        return plan

    def run(self, *, limit: int | None = None) -> ImportResult:
        """Import every user of the data directory not yet confirmed (at most ``limit``)."""
        started = time.monotonic()
        rows = list(self.data.users())
        result = ImportResult(self.name, total=len(rows), found_where=self.found_where)
        self.store.add_users(self.name, [(r.index, r.address) for r in rows])
        done = self.store.addresses(self.name, [Status.CONFIRMED])
        if done and self.rechecks_confirmed:
            done -= self._gone([r for r in rows if norm(r.address) in done], result)
        todo, result.left, refused = self._todo(rows, done, limit)
        result.done_before = len(rows) - len(todo) - len(refused) - result.left
        self.progress_start(result.done_before, result.done_before + len(todo) + len(refused))
        self._fail(refused, result)  # before anything is prepared or sent for them
        if todo:
            try:
                self.begin()
                executor = self.executor()
                if executor is None:
                    self._run_batches(todo, result)
                else:
                    executor.run_batches(todo, result)
            except OSError as exc:
                if exc.filename is None:  # not a file: a socket, a pipe ...
                    raise
                raise data_dir_error(exc, self.data) from exc
        result.seconds = time.monotonic() - started
        return result

    @staticmethod
    def _todo(rows: Sequence[UserRow], done: set[str], limit: int | None
              ) -> tuple[list[UserRow], int, list[tuple[str, str]]]:
        """The users of ``rows`` not ``done``, at most ``limit`` of them: ``(to import, how
        many are left for a later run, (address, why) of those refused for their records)``."""
        todo = [r for r in rows if norm(r.address) not in done]
        left = 0
        if limit is not None and limit < len(todo):
            left, todo = len(todo) - limit, todo[:limit]
        problems = {norm(a): why for a, why in user_problems(rows).items()}
        refused = [(r.address, problems[norm(r.address)]) for r in todo
                   if norm(r.address) in problems]
        return [r for r in todo if norm(r.address) not in problems], left, refused

    def _gone(self, confirmed: Sequence[UserRow], result: ImportResult) -> set[str]:
        """Those ``confirmed`` users (lower addresses) the target no longer holds: reopened, to
        be imported again by this run."""
        gone: set[str] = set()
        for batch in self._batches(confirmed):
            self._check_stop()
            found = self._retry(functools.partial(self.done_on_chain, batch),
                                "checking confirmed users on the chain")
            have = {norm(a) for a in found}
            gone.update(norm(r.address) for r in batch if norm(r.address) not in have)
        if gone:
            log.warning("%s: %d users the state store calls confirmed are not on the chain "
                        "(was it rolled back to an older state?); importing them again",
                        self.name, len(gone))
            self.store.mark_failed(self.name, [(a, "confirmed earlier, but not on the chain")
                                               for a in sorted(gone)])
            result.reimported = len(gone)
        return gone

    def _batches(self, todo: Sequence[UserRow]) -> Iterator[list[UserRow]]:
        for i in range(0, len(todo), self.batch_size):
            yield list(todo[i:i + self.batch_size])

    def _run_batches(self, todo: Sequence[UserRow], result: ImportResult) -> None:
        by_address = {norm(r.address): r for r in todo}
        flight: deque[list[Submission]] = deque()
        with ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}-prepare") as pool:
            batches = self._batches(todo)
            ahead: Future[Mapping[str, str]] | None = None
            batch = next(batches, None)
            if batch is not None:
                ahead = pool.submit(self.prepare, batch)
            while batch is not None and ahead is not None:
                unprepared = ahead.result()
                following = next(batches, None)
                ahead = pool.submit(self.prepare, following) if following is not None else None
                self._check_stop()
                flight.append(self._send(batch, unprepared, result))
                while len(flight) >= self.in_flight:
                    self._settle(flight.popleft(), by_address, result)
                batch = following
            while flight:
                self._settle(flight.popleft(), by_address, result)

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt

    def _send(self, batch: list[UserRow], unprepared: Mapping[str, str],
              result: ImportResult) -> list[Submission]:
        bad = {norm(a): reason for a, reason in unprepared.items()}
        if bad:
            self._fail(list(bad.items()), result)
        ready = [r for r in batch if norm(r.address) not in bad]
        if not ready:
            return []
        found = self._retry(lambda: self.done_on_chain(ready), "checking the chain")
        found = {norm(a): t for a, t in found.items()}
        self.record_found(ready, found, result)
        rest = [r for r in ready if norm(r.address) not in found]
        if not rest:
            return []
        subs = self._retry(lambda: self.submit(rest), "submitting registrations")
        self.record_submitted(subs, result)
        return subs

    def _settle(self, subs: list[Submission], by_address: Mapping[str, UserRow],
                result: ImportResult) -> None:
        if not subs:
            return
        outs = self._retry(lambda: self.outcomes(subs), "waiting for confirmations")
        self.record_confirmed([(by_address[norm(o.address)], o.target) for o in outs
                               if o.ok and not o.existing], result)
        existing = [o for o in outs if o.ok and o.existing]
        self.record_found([by_address[norm(o.address)] for o in existing],
                          {norm(o.address): o.target for o in existing}, result)
        self._fail([(o.address, o.reason or "failed") for o in outs if not o.ok], result)

    # -- bookkeeping (every executor records through these) ---------------------------------
    def record_found(self, users: Sequence[UserRow], found: Mapping[str, str | None],
                     result: ImportResult) -> None:
        """Users of ``users`` the target already had (``found``: lower address -> target)."""
        if not found:
            return
        # traces first: a crash in between leaves the user to be found again
        self.finish([(r, found[norm(r.address)] or r.address) for r in users
                     if norm(r.address) in found])
        self.store.mark_confirmed(self.name, list(found.items()))
        result.found_on_chain += len(found)
        self.progress(len(found))

    def record_submitted(self, subs: Sequence[Submission], result: ImportResult) -> None:
        self.store.mark_submitted(self.name, [(s.address, s.kind, s.ref, s.target) for s in subs])
        result.submitted += len(subs)

    def record_confirmed(self, done: Sequence[tuple[UserRow, str | None]],
                         result: ImportResult) -> None:
        """``(user, target or None)`` confirmed: traces first, then the record a rerun trusts."""
        if not done:
            return
        self.finish([(user, target or user.address) for user, target in done])
        self.store.mark_confirmed(self.name, [(user.address, target) for user, target in done])
        result.confirmed += len(done)
        self.progress(len(done))

    def record_failed(self, failures: list[tuple[str, str]], result: ImportResult) -> None:
        """``(address, reason)`` of users this run could not import (a rerun tries again)."""
        self._fail(failures, result)

    def _fail(self, failures: list[tuple[str, str]], result: ImportResult) -> None:
        if not failures:
            return
        for address, reason in failures:
            log.warning("%s: user %s not imported: %s", self.name, address, reason)
        self.store.mark_failed(self.name, failures)
        result.failed += len(failures)
        result.failures.extend(failures[:max(0, 100 - len(result.failures))])
        self.progress(len(failures))

    def _retry(self, fn: Callable[[], T], what: str) -> T:
        policy = RetryPolicy(self.settings.rpc_retries, self.retry_base, stop=self.stop)
        return policy.call(fn, what=f"{self.name}: {what}", service=self.service)
