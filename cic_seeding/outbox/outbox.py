"""The outbox: every transaction of every sender, recorded before it is broadcast, followed to
its receipt, and recovered when a node loses, replaces or starves it.

Per transaction, in the state store (table ``outbox``): raw bytes, sender, nonce, purpose,
owner, its family (the hash of its first signature) and its status::

    signed --broadcast--> sent --receipt--> mined | reverted
       |                   |--its nonce used by another transaction--> replaced
       |                   |--a fee bump of it was mined--> superseded
       +--the node refused the bytes (not for its nonce)--> failed

**Sending** (:meth:`Outbox.send`), under the sender's nonce lock: the node's counts; recorded
open transactions the node lacks (a nonce at or above its pending count) are broadcast again
first, lowest nonce first, so a gap left by a lost transaction of *any* purpose is filled
before anything new queues behind it; new transactions take the free nonces from the pending
count up, skipping those the outbox still holds; they are signed, recorded (with the caller's
own bookkeeping, in one store transaction) and broadcast. On a node that mines by itself, at
most ``max_unmined`` transactions of a sender wait in its pool at once: a sender with more
waits (with backoff) for the node to mine some.

**Watching** (:meth:`Outbox.settle`, one pass; :meth:`Outbox.wait`, until decided): receipts
of every signature of the families asked about, in one batch. A family without a receipt
whose last broadcast is older than ``resend_after`` (at once on a devnet that mines when
asked, after mining) is looked into, in one batch of ``eth_getTransactionByHash`` and
``eth_getTransactionCount`` (latest, pending) per sender:

* unknown to the node and its nonce not yet used -> the *same* raw bytes again (never
  re-signed: same hash, so it can take effect once at most), lowest nonce first, together with
  the sender's recorded open transactions below it that the node lost too (of any purpose);
* its nonce used, and no signature of the family has a receipt (asked once more) ->
  ``replaced``: the caller reconciles its own state from the chain *before* it signs anything
  new for it;
* known and pending, but with a fee cap below the current base fee -> a fee bump: the same
  call signed again at the same nonce with a higher fee (EIP-1559 fields when the node reports
  a base fee, else a higher gas price), recorded in the same family; whichever signature is
  mined decides, the others are ``superseded``. They share the nonce: never two effects;
* known, its nonce the sender's next, yet the node counts nothing pending for the sender (it
  holds the transaction in its queue and never mines it: anvil's automine under load did) ->
  a fee bump too: the same bytes again are "already known", a replacement is not.

Bounded: per run, a transaction is broadcast again at most ``max_resends`` times and bumped at
most ``max_bumps`` times, then its family is given up for this run with one line saying why
(it stays open: a rerun resumes it, never signs it anew). :meth:`Outbox.wait` also gives up
when none of its families has been decided for ``stall`` seconds. Everything lives in the
store, so a process killed anywhere is resumed by the next one. :attr:`Outbox.counts` counts
what this process did: sent, rebroadcast, replaced, bumped.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from typing import Any

from eth_utils import keccak

from cic_seeding.chain.signer import Signer, read_signed
from cic_seeding.chain.tx import Call
from cic_seeding.errors import TransactionError
from cic_seeding.outbox.node import AHEAD, FEE, NONCE, Fees, Node, Seen, refusal
from cic_seeding.state import OPEN_TX, OutTx, StateStore, TxStatus, norm

log = logging.getLogger(__name__)

#: Families per receipts batch of :meth:`Outbox.wait`.
PAGE = 1000
#: Longest pause (seconds) between looks at a sender's pool while it is full.
ROOM_WAIT = 0.2
#: ``(position of the first, rows)``: a chunk of a send's transactions, as they are recorded.
OnRecord = Callable[[int, Sequence[OutTx]], None]
#: Transactions signed (and recorded) per chunk of a send; one chunk is broadcast while the
#: next is signed.
PIPELINE_CHUNK = 100
#: Chunks of a send a node that mines when asked takes at once (see :meth:`Outbox._pipelined`).
DEVNET_FLIGHTS = 2


@dataclass(frozen=True)
class Intent:
    """A transaction to sign: the call, what it is for and whose it is."""

    call: Call
    purpose: str
    owner: str


@dataclass(frozen=True)
class Outcome:
    """Where one family stands after a pass.

    ``status`` is mined, reverted, replaced or failed once decided; signed or sent while it
    is on its way (``gave_up`` then says this run stops waiting for it, ``reason`` why)."""

    family: str
    status: TxStatus
    tx_hash: str  # the signature that decided it (the family's latest while open)
    block_number: int | None = None
    reason: str | None = None
    gave_up: bool = False

    @property
    def decided(self) -> bool:
        return not self.status.open

    @property
    def final(self) -> bool:
        """Nothing more will happen to it in this run."""
        return self.decided or self.gave_up

    @property
    def ok(self) -> bool:
        return self.status == TxStatus.MINED


@dataclass(frozen=True)
class Policy:
    """How patient the outbox is (settings ``tx_resend_after``, ``tx_max_resends``,
    ``tx_max_unmined``, ``tx_stall``)."""

    resend_after: float = 10.0  # seconds without a receipt before the node is asked
    max_resends: int = 5  # broadcasts of the same bytes again, per transaction and run
    max_bumps: int = 3  # fee bumps per family and run
    bump: float = 1.25  # factor on the fee a bump pays at least (nodes want >= 1.1)
    max_unmined: int = 500  # a sender's transactions in the pool at once (self-mining node)
    stall: float = 180.0  # seconds without a decided family before :meth:`wait` gives up


@dataclass
class TxCounts:
    """What one process's outbox did (the run summaries print :meth:`line`)."""

    sent: int = 0  # new signatures broadcast
    rebroadcast: int = 0  # the same bytes broadcast again
    replaced: int = 0  # families whose nonce another transaction took
    bumped: int = 0  # signed again at a higher fee (stuck below the base fee)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def to_dict(self) -> dict[str, int]:
        return {"sent": self.sent, "rebroadcast": self.rebroadcast, "replaced": self.replaced,
                "bumped": self.bumped}

    def line(self) -> str:
        return counts_line(self.to_dict())


def counts_line(counts: Mapping[str, int]) -> str:
    """``transactions: N sent, N rebroadcast, N replaced, N bumped`` (the run summaries)."""
    return "transactions: " + ", ".join(f"{counts.get(k, 0)} {k}" for k in
                                        ("sent", "rebroadcast", "replaced", "bumped"))


def _ceil(value: float) -> int:
    return int(math.ceil(value))


def _nonces(first: int, held: set[int], count: int) -> list[int]:
    """``count`` nonces from ``first`` up, skipping ``held``."""
    out: list[int] = []
    nonce = first
    while len(out) < count:
        if nonce not in held:
            out.append(nonce)
        nonce += 1
    return out


class Outbox:
    """One per process and chain; shared by the senders of a run (thread-safe)."""

    def __init__(self, store: StateStore, node: Node, policy: Policy | None = None, *,
                 clock: Callable[[], float] = time.time,
                 archive: Callable[[Sequence[OutTx]], None] | None = None) -> None:
        """``archive`` gets every transaction signed (first signatures and fee bumps) right
        after it is recorded and before it is broadcast (the data directory's ``tx/``)."""
        self.store = store
        self.node = node
        self.archive = archive
        self.policy = policy or Policy()
        self.counts = TxCounts()
        self._clock = clock
        self._signers: dict[str, Signer] = {}
        self._resends: dict[str, int] = {}  # tx hash -> broadcasts again in this run
        self._bumps: dict[str, int] = {}  # family -> bumps in this run
        self._unmined = 0  # sent since a block was last asked for (a node that mines when asked)
        self._lock = threading.RLock()

    @property
    def chain(self) -> str:
        return self.node.chain_key

    # -- sending -----------------------------------------------------------------------------
    def send(self, signer: Signer, intents: Sequence[Intent], *,
             on_record: OnRecord | None = None, lock: bool = True,
             mine: bool = True) -> list[OutTx]:
        """Sign ``intents`` with consecutive free nonces, record them (``on_record`` gets each
        chunk of them, with the position of its first, inside the same store transaction),
        broadcast them; returns them as they stand (sent, or failed/replaced with the node's
        words in ``reason``).

        ``lock`` False skips the machine-wide nonce lock (a sender only this process uses).
        On a node that mines when asked, a block is asked for every ``node.block_size``
        transactions this outbox sent, and after the send's last unless ``mine`` is False
        (more sends follow for the same block; :meth:`settle` asks for one if it waits)."""
        return self.send_many([(signer, i) for i in intents], on_record=on_record, lock=lock,
                              mine=mine)

    def send_many(self, items: Sequence[tuple[Signer, Intent]], *,
                  on_record: OnRecord | None = None, lock: bool = True,
                  mine: bool = True) -> list[OutTx]:
        """:meth:`send` for intents of several signers at once (one batch for the node's
        counts, one store transaction, one broadcast batch), in order."""
        if not items:
            return []
        signers = {norm(s.address): s for s, _ in items}
        wanted: dict[str, int] = {}
        for s, _ in items:
            wanted[norm(s.address)] = wanted.get(norm(s.address), 0) + 1
        with self._lock:
            self._signers.update(signers)
        if not self.node.explicit_mining and self.policy.max_unmined > 0:
            self._make_room(wanted, lock)
        with ExitStack() as locks:
            if lock:
                for sender in sorted(signers):
                    locks.enter_context(self.node.lock(sender))
            counts = self.node.nonces(sorted(signers))
            free = {sender: iter(_nonces(counts[sender][1],
                                         self._repair(sender, counts[sender][1]), n))
                    for sender, n in wanted.items()}
            price = self.node.gas_price()
            chain_id, chain = self.node.chain_id, self.chain

            def sign(start: int, chunk: Sequence[tuple[Signer, Intent]]) -> list[OutTx]:
                rows = []
                for signer, intent in chunk:
                    sender = norm(signer.address)
                    nonce = next(free[sender])
                    signed = signer.sign(intent.call, nonce=nonce, gas_price=price,
                                         chain_id=chain_id)
                    rows.append(OutTx(signed.tx_hash, chain, sender, nonce, signed.raw,
                                      intent.purpose, intent.owner.lower(), signed.tx_hash))
                with self.store.transaction():
                    self.store.record_txs(rows)
                    if self.archive is not None:
                        self.archive(rows)
                    if on_record is not None:
                        on_record(start, rows)
                return rows

            return self._pipelined(items, sign, mine)

    def _due(self, count: int, last: bool) -> bool:
        """Count ``count`` transactions about to be broadcast; True if a block is due after
        them (``block_size`` reached since the last, or ``last``)."""
        with self._lock:
            self._unmined += count
            if last or self._unmined >= self.node.block_size:
                self._unmined = 0
                return True
            return False

    def _pipelined(self, items: Sequence[tuple[Signer, Intent]],
                   sign: Callable[[int, Sequence[tuple[Signer, Intent]]], list[OutTx]],
                   mine: bool) -> list[OutTx]:
        """Sign and record ``items`` a chunk at a time, each chunk broadcast while the next is
        signed: the node takes chunks (I/O, on helper threads) while this thread signs the
        next one. A chunk is recorded before it is broadcast. A node that mines by itself gets
        the chunks in order, one at a time (nonces stay in order); one that mines when asked
        (a devnet) takes :data:`DEVNET_FLIGHTS` at once (anvil checks a batch's transactions
        on one core; two batches at once took ~1.5x as many a second), and is asked for a
        block every ``node.block_size`` transactions and after the last, once every chunk
        before it was taken."""
        if len(items) <= PIPELINE_CHUNK:
            rows = sign(0, items)
            errors = self.node.broadcast([t.raw for t in rows], mine=self._due(len(rows), mine))
            return self._broadcast(rows, counted="sent", errors=errors)
        width = DEVNET_FLIGHTS if self.node.explicit_mining else 1
        out: list[OutTx] = []
        flights: deque[tuple[list[OutTx], Future[list[str | None]]]] = deque()

        def land() -> None:  # the oldest chunk in flight, once the node took it
            done, answer = flights.popleft()
            out.extend(self._broadcast(done, counted="sent", errors=answer.result()))

        with ThreadPoolExecutor(width, thread_name_prefix="outbox-broadcast") as pool:
            for start in range(0, len(items), PIPELINE_CHUNK):
                rows = sign(start, items[start:start + PIPELINE_CHUNK])
                due = self._due(len(rows), mine and start + len(rows) == len(items))
                while flights and (due or len(flights) >= width):
                    land()
                flights.append((rows, pool.submit(self.node.broadcast, [t.raw for t in rows],
                                                  mine=due)))
            while flights:
                land()
        return out

    def _make_room(self, wanted: dict[str, int], lock: bool) -> None:
        """Wait until the node holds few enough of each sender's transactions unmined: a
        pool flooded with one sender's transactions is where nodes drop them (and where
        anvil's automine stalls)."""
        limit = self.policy.max_unmined
        delay, last, moved = 0.05, {s: -1 for s in wanted}, time.monotonic()
        while True:
            counts = self.node.nonces(sorted(wanted))
            full = [s for s, (latest, pending) in counts.items()
                    if pending - latest + wanted[s] > limit and pending != latest]
            if not full:
                return
            if any(counts[s][0] != last[s] for s in full):
                last, moved = {s: counts[s][0] for s in wanted}, time.monotonic()
            elif time.monotonic() - moved > self.policy.stall:
                s = full[0]
                raise TransactionError(
                    f"the node has mined none of the {counts[s][1] - counts[s][0]} "
                    f"transactions of {s} in its pool for {self.policy.stall:.0f}s",
                    hint="is the node mining? a rerun resumes every recorded transaction")
            for s in full:  # lost ones below the rest fill the gap first
                with self.node.lock(s) if lock else nullcontext():
                    self._repair(s, self.node.nonces([s])[s][1])
            time.sleep(delay)  # backoff while the node mines (not a synchronisation)
            delay = min(ROOM_WAIT, delay * 2)

    def _repair(self, sender: str, pending: int) -> set[int]:
        """Broadcast again the sender's open transactions at or above the node's pending
        count (the node lacks them: lost, or queued behind a lost one), lowest nonce first;
        returns the nonces they still hold. Call with the sender's lock held."""
        stuck = self.store.txs(self.chain, sender=sender, statuses=OPEN_TX, min_nonce=pending)
        if not stuck:
            return set()
        latest = {t.nonce: t for t in stuck}  # the newest signature of each nonce
        rows = [latest[n] for n in sorted(latest)]
        log.info("the node lacks %d recorded transactions of %s (nonces %d..%d): sent again "
                 "first, lowest nonce first", len(rows), sender, rows[0].nonce, rows[-1].nonce)
        sent = self._broadcast(rows, counted="rebroadcast")
        return {t.nonce for t in sent if t.status.open}

    def _broadcast(self, rows: Sequence[OutTx], *, counted: str,
                   errors: list[str | None] | None = None) -> list[OutTx]:
        """Broadcast ``rows`` (in their order) and record what the node said; ``counted``
        names the counter a broadcast the node took adds to (sent, rebroadcast; "": none).
        ``errors``: the node's answers to a broadcast of ``rows`` made already."""
        first = counted != "rebroadcast"
        if errors is None:
            errors = self.node.broadcast([t.raw for t in rows])
        errors = self._in_order(rows, errors)
        now = self._clock()
        sent, marks, out = [], [], []
        bump: list[OutTx] = []
        for t, error in zip(rows, errors, strict=True):
            if error is None:
                sent.append(t.tx_hash)
                out.append(dataclasses.replace(t, status=TxStatus.SENT, sends=t.sends + 1,
                                               sent_at=now))
                continue
            kind = refusal(error)
            if kind == AHEAD:  # unsent yet: the watcher sends it again after the lower ones
                out.append(t)
            elif kind == NONCE and first:  # it never reached the pool: it cannot be mined
                reason = f"the node refused it: its nonce {t.nonce} is used ({error})"
                # a first signature is replaced (its owner is checked on chain); a fee bump
                # came too late (the signature it bumps was mined or replaced: settle tells)
                status = TxStatus.REPLACED if t.tx_hash == t.family else TxStatus.FAILED
                marks.append((t.tx_hash, status, None, reason))
                out.append(dataclasses.replace(t, status=status, reason=reason))
            elif kind == NONCE:  # mined meanwhile, or replaced: the next pass tells
                out.append(t)
            elif kind == FEE and self._can_bump(t):
                bump.append(t)
                if t.tx_hash == t.family:  # the first signature keeps the family open
                    out.append(t)
                else:  # a bump the fee market outran: the next bump takes its place
                    reason = f"the node refused it: {error}"
                    marks.append((t.tx_hash, TxStatus.FAILED, None, reason))
                    out.append(dataclasses.replace(t, status=TxStatus.FAILED, reason=reason))
            else:
                reason = f"the node refused it: {error}"
                marks.append((t.tx_hash, TxStatus.FAILED, None, reason))
                out.append(dataclasses.replace(t, status=TxStatus.FAILED, reason=reason))
        if sent:
            self.store.mark_txs_sent(sent, now)
            if counted:
                self.counts.add(**{counted: len(sent)})
            if not first:
                with self._lock:
                    for h in sent:
                        self._resends[h] = self._resends.get(h, 0) + 1
        if marks:
            self.store.mark_txs(marks)
            for h, status, _, reason in marks:
                log.warning("transaction %s %s: %s", h, status.value, reason)
        for t in bump:
            self._bump(t)
        return out

    def _in_order(self, rows: Sequence[OutTx], errors: list[str | None]) -> list[str | None]:
        """``errors`` after sending again, one at a time and lowest nonce first, the rows a node
        refused because a lower nonce was not in its pool yet (it took the batch out of order,
        or cannot queue at all); stops at a sender's first one still refused."""
        ahead = sorted((i for i, e in enumerate(errors) if e is not None and
                        refusal(e) == AHEAD), key=lambda i: (rows[i].sender, rows[i].nonce))
        stuck: set[str] = set()
        for i in ahead:
            if rows[i].sender in stuck:
                continue
            (errors[i],) = self.node.broadcast([rows[i].raw])
            if errors[i] is not None and refusal(errors[i] or "") == AHEAD:
                stuck.add(rows[i].sender)
        return errors

    # -- fee bumps ---------------------------------------------------------------------------
    def _can_bump(self, t: OutTx) -> bool:
        with self._lock:
            return t.sender in self._signers and \
                self._bumps.get(t.family, 0) < self.policy.max_bumps

    def _bump(self, t: OutTx, fees: Fees | None = None) -> OutTx | None:
        """Sign ``t``'s call again at its nonce with a higher fee; record and broadcast it."""
        with self._lock:
            signer = self._signers.get(t.sender)
            if signer is None or self._bumps.get(t.family, 0) >= self.policy.max_bumps:
                return None
            self._bumps[t.family] = self._bumps.get(t.family, 0) + 1
        fields = read_signed(t.raw)
        fees = fees or self.node.fees()
        call = Call("0x" + fields.to.hex() if fields.to else None, fields.data, fields.value,
                    fields.gas)
        if fees.base_fee is not None:
            tip = max(fees.tip, _ceil(fields.tip * self.policy.bump))
            cap = max(2 * fees.base_fee + tip, _ceil(fields.max_fee * self.policy.bump))
            signed = signer.sign(call, nonce=t.nonce, gas_price=cap, chain_id=fields.chain_id,
                                 tip=tip)
        else:
            price = max(fees.gas_price, _ceil(fields.max_fee * self.policy.bump))
            signed = signer.sign(call, nonce=t.nonce, gas_price=price,
                                 chain_id=fields.chain_id)
        row = OutTx(signed.tx_hash, t.chain, t.sender, t.nonce, signed.raw, t.purpose, t.owner,
                    t.family)
        self.store.record_txs([row])
        if self.archive is not None:
            self.archive([row])
        log.info("transaction %s (nonce %d of %s) is priced below the node's fee or held "
                 "unmined; signed again at a higher fee: %s", t.tx_hash, t.nonce, t.sender,
                 row.tx_hash)
        self.counts.add(bumped=1)
        (out,) = self._broadcast([row], counted="")
        return out

    # -- watching ----------------------------------------------------------------------------
    def settle(self, families: Sequence[str]) -> dict[str, Outcome]:
        """One pass over ``families`` (first hashes); an outcome for each one recorded."""
        families = list(dict.fromkeys(f.lower() for f in families))
        if not families:
            return {}
        rows = self.store.txs(self.chain, families=families)
        by_family: dict[str, list[OutTx]] = {}
        for t in rows:
            by_family.setdefault(t.family, []).append(t)
        live = [t for t in rows if t.status not in (TxStatus.REPLACED, TxStatus.FAILED)]
        receipts = self.node.receipts([t.tx_hash for t in live]) if live else {}
        if self.node.explicit_mining and any(t.status.open and t.tx_hash not in receipts
                                             for t in live):
            self.node.mine()  # a devnet mines only when asked: maybe nobody asked yet
            with self._lock:
                self._unmined = 0
            missing = [t.tx_hash for t in live if t.tx_hash not in receipts]
            receipts.update(self.node.receipts(missing))
        out: dict[str, Outcome] = {}
        marks: list[tuple[str, TxStatus, int | None, str | None]] = []
        waiting: list[list[OutTx]] = []
        for family, sigs in by_family.items():
            decided = self._from_receipts(family, sigs, receipts, marks)
            if decided is not None:
                out[family] = decided
                continue
            for t in sigs:  # mined once, no receipt now: a reorg dropped its block
                if t.status in (TxStatus.MINED, TxStatus.REVERTED, TxStatus.SUPERSEDED):
                    marks.append((t.tx_hash, TxStatus.SENT, None, "its block was reorganised "
                                  "away"))
            if any(t.status == TxStatus.REPLACED for t in sigs):
                dead = next(t for t in sigs if t.status == TxStatus.REPLACED)
                out[family] = Outcome(family, TxStatus.REPLACED, dead.tx_hash, None, dead.reason)
            elif all(t.status == TxStatus.FAILED for t in sigs):
                out[family] = Outcome(family, TxStatus.FAILED, sigs[-1].tx_hash, None,
                                      sigs[-1].reason)
            else:
                waiting.append([t for t in sigs if t.status != TxStatus.FAILED])
        if marks:
            self.store.mark_txs(marks)
        now = self._clock()
        stale = [sigs for sigs in waiting if self.node.explicit_mining
                 or now - max(t.sent_at for t in sigs) >= self.policy.resend_after]
        out.update(self._inspect(stale))
        for sigs in waiting:
            family = sigs[0].family
            if family not in out:
                out[family] = Outcome(family, TxStatus.SENT, sigs[-1].tx_hash)
        missing = [f for f in families if f not in out]
        if missing:
            raise TransactionError(f"{len(missing)} transactions are not in the outbox "
                                   f"(first {missing[0]})", hint="is this the state store the "
                                   "transactions were sent with?")
        return out

    @staticmethod
    def _from_receipts(family: str, sigs: Sequence[OutTx], receipts: dict[str, Any],
                       marks: list[tuple[str, TxStatus, int | None, str | None]]
                       ) -> Outcome | None:
        won = [t for t in sigs if t.tx_hash in receipts]
        if not won:
            return None
        winner = won[0]
        rc = receipts[winner.tx_hash]
        status = TxStatus.MINED if rc.ok else TxStatus.REVERTED
        if winner.status != status or winner.block_number != rc.block_number:
            marks.append((winner.tx_hash, status, rc.block_number, None))
        for t in sigs:
            if t is not winner and t.status not in (TxStatus.SUPERSEDED, TxStatus.FAILED):
                marks.append((t.tx_hash, TxStatus.SUPERSEDED, None,
                              f"{winner.tx_hash} (same nonce) was mined"))
        return Outcome(family, status, winner.tx_hash, rc.block_number)

    @staticmethod
    def _given_up(t: OutTx, why: str) -> Outcome:
        return Outcome(t.family, TxStatus.SENT, t.tx_hash, None,
                       f"{why} (nonce {t.nonce} of {t.sender}); a rerun resumes it", True)

    def _inspect(self, stale: Sequence[Sequence[OutTx]]) -> dict[str, Outcome]:
        """Ask the node about families without a receipt; rebroadcast, bump or declare them
        replaced (see the module documentation). Returns the families decided."""
        if not stale:
            return {}
        senders = sorted({sigs[0].sender for sigs in stale})
        hashes = [t.tx_hash for sigs in stale for t in sigs]
        counts = self.node.nonces(senders)
        seen = self.node.seen(hashes)
        families = {sigs[0].family for sigs in stale}
        # the senders' open transactions below these that the node may have lost too
        blockers: list[OutTx] = []
        for sender in senders:
            top = max(sigs[0].nonce for sigs in stale if sigs[0].sender == sender)
            blockers += [t for t in self.store.txs(self.chain, sender=sender, statuses=OPEN_TX,
                                                   min_nonce=counts[sender][0])
                         if t.nonce < top and t.family not in families]
        if blockers:
            seen.update(self.node.seen([t.tx_hash for t in blockers]))
        used: list[Sequence[OutTx]] = []
        resend: list[OutTx] = []
        bump: list[OutTx] = []
        fees: Fees | None = None
        for sigs in stale:
            latest = counts[sigs[0].sender][0]
            views = [seen.get(t.tx_hash, Seen(False)) for t in sigs]
            if any(v.mined for v in views):
                continue  # its receipt comes with the next pass
            if sigs[0].nonce < latest:
                used.append(sigs)
            elif any(v.known for v in views):
                if fees is None:
                    fees = self.node.fees()
                starved = sigs[0].nonce == latest == counts[sigs[0].sender][1]
                if starved or (fees.base_fee is not None and
                               max(v.fee_cap for v in views) < fees.base_fee):
                    bump.append(sigs[-1])
            else:
                resend.append(sigs[-1])
        by_nonce: dict[tuple[str, int], OutTx] = {}
        for t in blockers:
            if not seen.get(t.tx_hash, Seen(False)).known:
                by_nonce[(t.sender, t.nonce)] = t
        out = self._replaced(used)
        with self._lock:
            over = {t.tx_hash for t in resend
                    if self._resends.get(t.tx_hash, 0) >= self.policy.max_resends}
        for t in resend:
            if t.tx_hash in over:
                out[t.family] = self._given_up(
                    t, f"lost by the node after {self.policy.max_resends} broadcasts of the "
                    "same bytes in this run")
        todo = sorted([t for t in resend if t.tx_hash not in over] + list(by_nonce.values()),
                      key=lambda t: (t.sender, t.nonce))
        if todo:
            log.info("%d transactions the node does not know (lost): the same bytes sent "
                     "again, lowest nonce first", len(todo))
            for sender in sorted({t.sender for t in todo}):
                with self.node.lock(sender):
                    self._broadcast([t for t in todo if t.sender == sender],
                                    counted="rebroadcast")
        for t in bump:
            if self._bump(t, fees) is None:
                out[t.family] = self._given_up(
                    t, f"still priced below the base fee after {self.policy.max_bumps} fee "
                    "bumps in this run" if t.sender in self._signers else
                    "priced below the base fee, and this run has not the key to re-sign it")
        return out

    def _replaced(self, used: Sequence[Sequence[OutTx]]) -> dict[str, Outcome]:
        """Families whose nonce is used: mined after all (a receipt now), else replaced."""
        if not used:
            return {}
        receipts = self.node.receipts([t.tx_hash for sigs in used for t in sigs])
        out: dict[str, Outcome] = {}
        marks: list[tuple[str, TxStatus, int | None, str | None]] = []
        for sigs in used:
            family = sigs[0].family
            decided = self._from_receipts(family, sigs, receipts, marks)
            if decided is not None:
                out[family] = decided
                continue
            reason = (f"nonce {sigs[0].nonce} of {sigs[0].sender} was used by another "
                      "transaction")
            marks += [(t.tx_hash, TxStatus.REPLACED, None, reason) for t in sigs]
            out[family] = Outcome(family, TxStatus.REPLACED, sigs[-1].tx_hash, None, reason)
        replaced = sum(1 for o in out.values() if o.status == TxStatus.REPLACED)
        if replaced:
            self.counts.add(replaced=replaced)
            log.warning("%d transactions were replaced: their nonce went to another "
                        "transaction; their owners are checked on chain before anything is "
                        "signed for them again", replaced)
        self.store.mark_txs(marks)
        return out

    def wait(self, families: Sequence[str], *, stop: threading.Event | None = None
             ) -> dict[str, Outcome]:
        """:meth:`settle` until every family is decided or given up (or ``stop`` is set:
        those left are open, not given up). Waits with backoff between passes on a node that
        mines by itself; on one that mines when asked, each pass mines."""
        todo = list(dict.fromkeys(f.lower() for f in families))
        out: dict[str, Outcome] = {}
        delay, progress = 0.02, time.monotonic()
        passes = 0
        while todo:
            got: dict[str, Outcome] = {}
            for i in range(0, len(todo), PAGE):
                got.update(self.settle(todo[i:i + PAGE]))
            final = {f: o for f, o in got.items() if o.final}
            out.update(got)
            if final:
                progress, delay = time.monotonic(), 0.02
            todo = [f for f in todo if f not in final]
            if not todo or (stop is not None and stop.is_set()):
                break
            if time.monotonic() - progress > self.policy.stall:
                why = f"none of {len(todo)} transactions was mined for {self.policy.stall:.0f}s"
                for f in todo:
                    out[f] = dataclasses.replace(out[f], gave_up=True,
                                                 reason=f"{why}; a rerun resumes it")
                log.warning("%s: giving up on them for this run", why)
                break
            passes += 1
            if self.node.explicit_mining and passes < 4:
                continue  # settle mined: look again at once
            if (stop or threading.Event()).wait(delay):
                break
            delay = min(1.0, delay * 2)
        return out

    # -- resuming ----------------------------------------------------------------------------
    def open_families(self, purpose: str, owners: Sequence[str]) -> dict[str, str]:
        """``owner -> family`` of the open transactions recorded for ``owners`` (a rerun
        resumes these instead of signing new ones)."""
        out: dict[str, str] = {}
        for t in self.store.txs(self.chain, purpose=purpose, owners=owners, statuses=OPEN_TX):
            out[t.owner] = t.family
        return out

    def adopt(self, items: Sequence[tuple[str, str, str]]) -> list[str]:
        """Record ``(raw, purpose, owner)`` transactions sent before the outbox existed (a
        ledger row of an older version), as sent long ago; returns their hashes."""
        rows = []
        for raw, purpose, owner in items:
            fields = read_signed(raw)
            h = "0x" + keccak(bytes.fromhex(raw.removeprefix("0x"))).hex()
            rows.append(OutTx(h, self.chain, fields.sender, fields.nonce, raw, purpose,
                              owner.lower(), h, TxStatus.SENT, 1))
        self.store.record_txs(rows)
        return [t.tx_hash for t in rows]

    def known(self, hashes: Sequence[str]) -> set[str]:
        """Those ``hashes`` the outbox has."""
        return {t.tx_hash for t in self.store.txs(self.chain, hashes=hashes)}

