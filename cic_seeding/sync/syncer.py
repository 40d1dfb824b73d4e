"""The block syncer: a persisted cursor over AccountsIndex registrations, and the payments.

One round: detect a reorg (stored block hashes the chain no longer has) and roll back; read the
registrations of ``[cursor, head - confirmations]`` in adaptive ranges and, per range, plan the
payments of this data directory's users *in the same transaction* that advances the cursor;
send pending payments; settle submitted ones. By default it stops when every user is done (or a
timeout runs out); with ``follow`` it keeps going until stopped.

An opening balance paid by the registering transaction itself (the opt-in BatchFunder path) is
read from the chain (``prepaid``) and planned *as confirmed*, in that same transaction with the
cursor: it is never paid again, whatever the importer managed to record before a crash.

The registering transaction of each user (its log names it) is saved under the data
directory's ``tx/`` if it is not there yet -- a registration another signer made, the custodial
engine or the USSD gateway; ours are there since before they were sent -- before the cursor
moves past its log, so a killed syncer saves it on its rerun.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cic_seeding.outbox import TxArchive, counts_line
from cic_seeding.remote import RetryPolicy
from cic_seeding.state import FAUCET, FUND, GAS, StateStore, Status, norm
from cic_seeding.sync._ranges import LogReader
from cic_seeding.sync._reorg import rewind_point
from cic_seeding.sync.payer import Payer
from cic_seeding.sync.port import SyncChain

log = logging.getLogger(__name__)

#: Submitted payments checked per receipts batch.
SETTLE_PAGE = 1000

#: ``(block, address)`` registrations -> ``{address: (block, tx_hash, amount)}`` of those whose
#: registering transaction also paid the opening balance.
Prepaid = Callable[[Sequence[tuple[int, str]]], Mapping[str, tuple[int, str, int]]]
#: ``(users done, users)`` of this data directory: once when the run begins (those paid by
#: earlier runs), then after every round.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PaymentPlan:
    """What each registered user receives: opening balance, faucet payout, gas gift."""

    balances: Mapping[str, int]  # 0x lower-case address -> amount in the token's smallest unit
    faucet_amount: int = 0
    gas_gift: int = 0

    def for_user(self, address: str) -> list[tuple[str, str, int]]:
        a = norm(address)
        items = [(a, FUND, self.balances.get(a, 0)), (a, FAUCET, self.faucet_amount),
                 (a, GAS, self.gas_gift)]
        return [item for item in items if item[2] > 0]


@dataclass
class SyncResult:
    importer: str
    users: int = 0
    done: int = 0
    failed: int = 0
    waiting: int = 0  # users not (yet) registered on chain
    #: Of ``waiting``, those whose import failed: a run without ``follow`` stops waiting once
    #: they are all it waits for (only a rerun of the import can register them).
    not_imported: int = 0
    first_block: int | None = None
    next_block: int | None = None
    reorgs: int = 0
    timed_out: bool = False
    stopped: bool = False
    seconds: float = 0.0
    payments: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> status -> n
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # address, kind, reason
    #: What the run's outbox did: sent, rebroadcast, replaced, bumped.
    transactions: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.done == self.users and self.failed == 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def render_text(self) -> str:
        state = "done" if self.ok else "timed out" if self.timed_out else \
            "stopped" if self.stopped else "incomplete"
        unimported = f" ({self.not_imported} of them: import failed)" if self.not_imported \
            else ""
        lines = [f"sync {self.importer}: {state}: {self.done}/{self.users} users paid, "
                 f"{self.failed} failed, {self.waiting} not registered yet{unimported}; blocks "
                 f"{self.first_block}..{self.next_block}, {self.reorgs} reorgs, "
                 f"{self.seconds:.1f}s"]
        for kind, counts in sorted(self.payments.items()):
            lines.append(f"  {kind}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
        if self.transactions:
            lines.append("  " + counts_line(self.transactions))
        lines += [f"  failed {a} {k}: {r}" for a, k, r in self.failures[:10]]
        return "\n".join(lines)


@dataclass(frozen=True)
class SyncOptions:
    follow: bool = False
    timeout: float | None = None
    poll: float = 1.0  # seconds between rounds when there is nothing to do
    confirmations: int = 0
    batch_size: int | None = None  # payments per signed batch (None: settings.batch_size)
    from_block: int | None = None
    retries: int = 5  # transient errors (the node went away) in a row before giving up
    #: True once whatever registers the users has finished (an import running beside the
    #: syncer): after the next round, users still not registered are left waiting and the
    #: run ends instead of waiting for them.
    until: Callable[[], bool] | None = None


class Syncer:
    def __init__(self, importer: str, chain: SyncChain, store: StateStore, payer: Payer,
                 plan: PaymentPlan, users: Mapping[str, str], options: SyncOptions,
                 stop: threading.Event | None = None, prepaid: Prepaid | None = None,
                 archive: TxArchive | None = None, progress: Progress | None = None) -> None:
        """``users``: target-chain address -> data directory address, for this directory.
        ``prepaid``: reads which registrations paid their opening balance themselves.
        ``archive``: the data directory's ``tx/``, where the registering transactions of the
        users are saved if they are not there yet (those another signer made: the custodial
        engine's, the USSD gateway's). ``progress(done, users)``: see :data:`Progress`."""
        self.importer = importer
        self.chain = chain
        self.store = store
        self.payer = payer
        self.plan = plan
        # 0x lower-case both (run_sync's importers give them so): kept, not copied
        lower = all(t == norm(t) and a == norm(a) for t, a in users.items())
        self.users = users if lower else {norm(t): norm(a) for t, a in users.items()}
        self.options = options
        self.stop = stop or threading.Event()
        self.prepaid = prepaid
        self.archive = archive
        self.progress = progress
        self.reader = LogReader(chain.registrations)
        self.result = SyncResult(importer, users=len(self.users))
        self._owed_nothing = sum(1 for t in self.users if not plan.for_user(t))
        self._before: dict[str, int] | None = None  # see _registered_before
        self._registered_all = False  # a round began after the registering finished

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> SyncResult:
        started = time.monotonic()
        deadline = None if self.options.timeout is None else started + self.options.timeout
        with self.store.exclusive(f"sync-{self.importer}"):
            self._start()
            if self.progress is not None:
                self._summarise()
                self.progress(self.result.done, self.result.users)
            while True:
                registered_all = self.options.until is not None and self.options.until()
                busy = RetryPolicy(self.options.retries, stop=self.stop).call(
                    self.round, what=f"sync {self.importer}")
                self._registered_all = registered_all
                self._summarise()
                if self.progress is not None:
                    self.progress(self.result.done, self.result.users)
                self.result.seconds = time.monotonic() - started
                if self.stop.is_set():
                    self.result.stopped = True
                    break
                if not self.options.follow and self._finished():
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    self.result.timed_out = True
                    break
                if not busy:
                    self.stop.wait(self.options.poll)
        return self.result

    def _start(self) -> None:
        failed = self.store.payments(self.importer, [Status.FAILED])
        if failed:  # a rerun tries failed payments again (resuming a transaction on its way)
            self.payer.retry(failed)
        cursor = self.store.cursor(self.importer, self.chain.chain_key)
        if cursor is None or self.options.from_block is not None:
            start = self.options.from_block
            if start is None:
                start = max(0, self.chain.head() - self.options.confirmations)
            if cursor is None:
                cursor = self.store.init_cursor(self.importer, self.chain.chain_key, start)
            else:
                self.store.rewind_cursor(self.importer, self.chain.chain_key, start)
        self.result.first_block = self.result.next_block = self.store.cursor(
            self.importer, self.chain.chain_key).next_block  # type: ignore[union-attr]

    def round(self) -> bool:
        """One pass; True if it did anything (so the next pass should not wait)."""
        self._check_reorg()
        scanned = self._scan()
        self._reconcile()
        sent, settled = self._pay()
        settled += self._settle()
        if settled:
            # cover the blocks the payments were mined in, so the cursor holds their hashes
            # and a reorg that drops them is seen (even after this run has finished)
            self._scan()
        return bool(scanned or sent or settled)

    # -- steps -------------------------------------------------------------------------------
    def _check_reorg(self) -> None:
        cursor = self.store.cursor(self.importer, self.chain.chain_key)
        if cursor is None or not cursor.hashes:
            return
        current = self.chain.block_hashes(sorted(cursor.hashes))
        resume = rewind_point(cursor.hashes, current)
        if resume is None:
            return
        log.warning("reorg: stored block hashes from %d on are gone; rescanning from %d",
                    min(n for n in cursor.hashes if current.get(n) != cursor.hashes[n]), resume)
        with self.store.transaction():
            self.store.rewind_cursor(self.importer, self.chain.chain_key, resume)
            reopened = self.store.reopen_payments(self.importer, resume)
        self.result.reorgs += 1
        log.info("reorg: %d payments mined in dropped blocks are checked again", reopened)

    def _scan(self) -> int:
        cursor = self.store.cursor(self.importer, self.chain.chain_key)
        assert cursor is not None
        end = self.chain.head() - self.options.confirmations + 1
        if cursor.next_block >= end:
            return 0
        planned = 0
        for start, stop, logs in self.reader.read(cursor.next_block, end):
            ours = [(b, norm(a)) for b, a in logs if norm(a) in self.users]
            items, paid = self._plan(ours)
            hashes = self.chain.block_hashes(self._kept_blocks(start, stop))
            with self.store.transaction():
                planned += self.store.plan_payments(self.importer, items)
                self._record_prepaid(paid)
                self.store.advance_cursor(self.importer, self.chain.chain_key, stop, hashes)
            if self.stop.is_set():
                break
        self.result.next_block = self.store.cursor(
            self.importer, self.chain.chain_key).next_block  # type: ignore[union-attr]
        return planned or 1

    def _kept_blocks(self, start: int, stop: int) -> list[int]:
        """The blocks whose hashes the cursor keeps for the range ``[start, stop)``: its last,
        and one below the rest of it (the block before it, or for a range longer than the store
        keeps hashes of, the lowest kept). A reorg inside the range then mismatches a hash
        above a matching one, and :func:`rewind_point` rewinds to the range's start (with only
        the last hash it would resume at the last block, missing what changed below it)."""
        below = max(start - 1, stop - self.store.KEEP_HASHES)
        return sorted({n for n in (below, stop - 1) if n >= 0})

    def _plan(self, registrations: Sequence[tuple[int, str]]
              ) -> tuple[list[tuple[str, str, int]], dict[str, tuple[int, str, int]]]:
        """The payments of ``registrations``, and the opening balances their own
        transactions paid (planned with the amount paid, to be recorded as confirmed)."""
        if registrations and self.archive is not None:
            self.archive.fetch({h: f"registration of {a}" for a, h in
                                self.chain.registering_txs(registrations).items()})
        paid = dict(self.prepaid(registrations)) if self.prepaid and registrations else {}
        items = []
        for _, address in registrations:
            for a, kind, amount in self.plan.for_user(address):
                if kind == FUND and a in paid:
                    amount = paid[a][2]
                items.append((a, kind, amount))
        for a, (_, _, amount) in paid.items():  # paid although the plan says nothing
            kinds = {kind for _, kind, _ in self.plan.for_user(a)}
            if kinds and FUND not in kinds:  # (a user owed nothing stays out of the ledger)
                items.append((a, FUND, amount))
        return items, paid

    def _record_prepaid(self, paid: Mapping[str, tuple[int, str, int]]) -> None:
        """Opening balances paid on chain by the registration: confirmed with its tx and block
        (no raw transaction: there is nothing of ours to resend)."""
        if not paid:
            return
        self.store.mark_payments_submitted(self.importer, [
            (a, FUND, h, "", -1) for a, (_, h, _) in paid.items()])
        self.store.mark_payments_confirmed(self.importer, [
            (a, FUND, block) for a, (block, _, _) in paid.items()])

    def _registered_before(self, addresses: set[str]) -> list[tuple[int, str]]:
        """The registrations of ``addresses`` below the block this run started at.

        Read once per run (a full log scan, needed only with ``prepaid``): those blocks are
        behind the cursor for good, while anything at or above it is planned by the scan.
        """
        if self._before is None:
            end = self.result.first_block or 0
            self._before = {}
            for _, _, logs in LogReader(self.chain.registrations).read(0, end):
                self._before.update((norm(a), b) for b, a in logs if norm(a) in self.users)
        return [(b, a) for a in addresses if (b := self._before.get(a)) is not None]

    def _reconcile(self) -> None:
        """Users the importer confirmed but no log planned for (e.g. registered before the
        cursor began): plan them if the AccountsIndex has them."""
        missing = [t for t in self.store.unplanned_targets(self.importer)
                   if t in self.users and self.plan.for_user(t)]
        if not missing:
            return
        have = self.chain.registered(missing)
        if not have:
            return
        if self.prepaid is not None:
            # learn from their registrations what they were paid; one at or above the cursor
            # is planned by the next scan (planning it here could pay a prepaid balance again)
            items, paid = self._plan(self._registered_before(have))
        else:
            items, paid = [item for t in missing if t in have
                           for item in self.plan.for_user(t)], {}
        if items:
            log.info("%d registered users had no payments planned; planning them",
                     len({a for a, _, _ in items}))
            with self.store.transaction():
                self.store.plan_payments(self.importer, items)
                self._record_prepaid(paid)

    def _pay(self) -> tuple[int, int]:
        """Send the pending payments a batch at a time: ``(sent, settled)``. On a node that
        mines when asked each batch is mined as it is sent, and (sovereign payments,
        ``Payer.settles_each_batch``) settled before the next: the transactions open stay one
        batch, and their receipts come from the blocks just read
        (:mod:`cic_seeding.outbox._blocks`) -- settled after all of them, 300,000 payments'
        receipts had left that index and were asked one by one (anvil: slowly)."""
        sent = settled = 0
        eager = self.payer.settles_each_batch
        while not self.stop.is_set():
            batch = self.store.payments(self.importer, [Status.PENDING],
                                        limit=self.options.batch_size or 250)
            if not batch:
                break
            sent += self.payer.pay(batch)
            if eager:
                settled += self._settle()
        return sent, settled

    def _settle(self) -> int:
        settled, after = 0, 0
        while not self.stop.is_set():  # a page at a time: memory stays flat in the ledger's size
            page = self.store.payments(self.importer, [Status.SUBMITTED], limit=SETTLE_PAGE,
                                       after=after)
            if not page:
                break
            settled += self.payer.settle(page)
            after = page[-1].seq
        return settled

    # -- bookkeeping -------------------------------------------------------------------------
    def _summarise(self) -> None:
        """Progress from the store's counts (the ledger is never loaded: memory stays flat).

        A user owed something is done when the ledger has its payments, all confirmed (they
        are planned together); a user owed nothing is done at once and never in the ledger.
        """
        counts: dict[str, dict[str, int]] = {}
        for (kind, status), n in self.store.payment_counts(self.importer).items():
            counts.setdefault(kind, {})[status.value] = n
        self.result.payments = counts
        summary = self.store.payment_summary(self.importer)
        owed = len(self.users) - self._owed_nothing
        self.result.done = summary.done + self._owed_nothing
        self.result.waiting = max(0, owed - summary.planned)
        self.result.failed = summary.failed
        self.result.failures = [(p.address, p.kind, p.reason or "failed") for p in
                                self.store.payments(self.importer, [Status.FAILED], limit=100)]
        unimported, first = self.store.failed_unpaid(self.importer)
        self.result.not_imported = min(unimported, self.result.waiting)
        if self.result.not_imported:
            self.result.failures += [
                (u.address, "import", f"its import failed ({u.reason or 'no reason recorded'});"
                 f" fix that and rerun `import {self.importer}`, then sync") for u in first]

    def _finished(self) -> bool:
        r = self.result
        if r.done == r.users:
            return True
        busy = {s for kinds in r.payments.values() for s, n in kinds.items()
                if n and s in (Status.PENDING.value, Status.SUBMITTED.value)}
        # alone, a sync stops waiting for users whose import failed; beside an import (which
        # may be retrying them) it waits for that import to end (_registered_all)
        unimported = self.options.until is None and 0 < r.waiting <= r.not_imported
        return not busy and ((r.waiting == 0 and r.failed > 0) or self._registered_all
                             or unimported)
