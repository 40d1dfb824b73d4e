"""The engine's transaction queue: nonces from the database, a dispatcher, a tracker.

**Nonces.** One row per (chain, signer) in ``nonces`` holds the next nonce.
:meth:`TxQueue.enqueue_many` takes as many as it queues with one ``UPDATE ... SET next_nonce =
next_nonce + n RETURNING``, signs, and inserts the signed transactions as ``queued`` (one
multi-row ``INSERT``) *in the same database transaction*: the row lock serialises
every worker on every machine that signs for that signer, and a worker that dies before the
commit leaves no gap (the counter rolls back with the row). The first use of a signer starts
the counter at the chain's pending transaction count. (On SQLite, an embedded engine's, the
transaction holds the whole database's write lock instead of a row lock: see
:mod:`._sqlite`.)

**Dispatcher.** :meth:`TxQueue.dispatch` claims ``queued`` rows (``FOR UPDATE SKIP LOCKED``, so
any number of dispatchers share the queue) :data:`BLOCK_TXS` at a time, broadcasts them as
one JSON-RPC batch and marks them ``sent``. A refusal is handled
by its error class, never blindly:

* ``nonce_too_low`` (the nonce is taken): if a version of ours was mined or is pending, ``sent``;
  otherwise the counter is moved up to the chain's pending count and the transaction re-signed
  with a fresh nonce;
* ``underpriced``: re-signed with the same nonce at a higher gas price;
* ``out_of_gas`` (intrinsic gas too low): re-signed with the same nonce and more gas;
* anything else (``insufficient_funds``, ``rejected``): ``failed`` with the node's words, and
  the nonce is given back (the counter steps back, or a zero-value filler takes the nonce) so
  later transactions of the signer are not stuck behind a gap.

**Tracker.** :meth:`TxQueue.track` claims ``sent`` rows and reads their receipts in one batch
(on a dev node with automine off it mines first, so the dispatcher goes on sending
meanwhile): success -> ``mined``; a revert that used all its gas -> ``out_of_gas``, re-queued
with a fresh nonce and twice the gas; another revert -> ``mined`` if the chain shows the
effect anyway (the account is registered, the faucet paid) else ``failed``. A sent
transaction the node no longer knows (dropped) is signed again with the same nonce at the
current price.
Every version of a row signed with the same nonce is remembered (``replaced``): whichever of
them is mined counts, so re-signing never executes a transaction twice. After
:data:`MAX_ATTEMPTS` a transaction fails for good.

:class:`QueueLoop` runs the dispatcher and the tracker in two threads: the node takes one
batch while the receipts of the one before are read (their claims never overlap: queued rows
vs sent rows).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cic_seeding.chain.client import ChainClient
from cic_seeding.chain.signer import Signer
from cic_seeding.chain.tx import Call
from cic_seeding.errors import CicSeedError

from .storage import placeholders, values

log = logging.getLogger(__name__)

QUEUED, SENT, MINED, FAILED = "queued", "sent", "mined", "failed"
NONCE_TOO_LOW, UNDERPRICED, OUT_OF_GAS = "nonce_too_low", "underpriced", "out_of_gas"
INSUFFICIENT_FUNDS, REJECTED, REVERTED = "insufficient_funds", "rejected", "reverted"
DROPPED = "dropped"
FILLER = "filler"
MAX_ATTEMPTS = 5
FILLER_GAS = 21_000
#: Rows one INSERT carries (16 parameters each: well inside both databases' limits).
ROWS_PER_INSERT = 200
#: Transactions the dispatcher claims and broadcasts at a time (so a dev node that mines when
#: the tracker asks gets blocks of about this size): anvil builds a receipt by walking its
#: block, so one of a 500-transaction block costs ten times one of a 50-transaction block.
BLOCK_TXS = 100
#: On a dev node that mines when asked, the tracker waits (at most :data:`MAX_GATHER` seconds)
#: for this many sent transactions while more are queued, so blocks hold several batches:
#: anvil's block costs time in proportion to the whole state (~0.1 s at 30,000 accounts),
#: whatever it holds.
FULL_BLOCK = 500
MAX_GATHER = 0.5

_CLASSES = (
    # a transaction of ours or someone else's holds the nonce (checked first: the node says
    # "replacement ... underpriced" when another transaction has taken our nonce)
    (NONCE_TOO_LOW, re.compile(r"nonce too low|nonce has already been used|NonceTooLow|OldNonce|"
                               r"replacement transaction underpriced|already used", re.I)),
    (UNDERPRICED, re.compile(r"underpriced|fee too low|gas price too low|less than block base|"
                             r"FeeCapTooLow|GasPriceLessThanBasefee|max fee per gas less", re.I)),
    (OUT_OF_GAS, re.compile(r"intrinsic gas too low|gas too low|out of gas|IntrinsicGasTooLow|"
                            r"CallGasCostMoreThanGasLimit", re.I)),
    (INSUFFICIENT_FUNDS, re.compile(r"insufficient funds|InsufficientFunds|LackOfFund", re.I)),
)


def classify(message: str) -> str:
    """The error class of a node's refusal of ``eth_sendRawTransaction``."""
    for name, pattern in _CLASSES:
        if pattern.search(message):
            return name
    return REJECTED


@dataclass(frozen=True)
class TxRow:
    id: int
    signer: str
    nonce: int
    kind: str
    subject: str | None
    to: str | None
    data: bytes
    value: int
    gas: int
    gas_price: int
    raw: str
    tx_hash: str
    status: str
    attempts: int
    replaced: tuple[str, ...] = ()  # earlier hashes with the same nonce: one may be mined

    def call(self, gas: int | None = None) -> Call:
        return Call(self.to, self.data, self.value, gas or self.gas)

    @property
    def hashes(self) -> tuple[str, ...]:
        return (self.tx_hash, *self.replaced)


_COLUMNS = ("id, signer, nonce, kind, subject, to_address, data, value, gas, gas_price, raw, "
            "tx_hash, status, attempts, replaced")


def _row(columns: Sequence[Any]) -> TxRow:
    (id_, signer, nonce, kind, subject, to, data, value, gas, price, raw, tx_hash, status,
     attempts, replaced) = columns
    if isinstance(replaced, str):  # SQLite keeps the array as JSON text
        replaced = json.loads(replaced)
    return TxRow(int(id_), signer, int(nonce), kind, subject, to, bytes(data), int(value),
                 int(gas), int(price), raw, tx_hash, status, int(attempts),
                 tuple(replaced or ()))


@dataclass(frozen=True)
class Queued:
    """A transaction to queue: the call, what it is for and on whose behalf."""

    call: Call
    kind: str
    subject: str | None = None
    request_id: str | None = None


SignerFor = Callable[[str], Signer]
EffectDone = Callable[[Sequence[TxRow]], set[int]]


class TxQueue:
    """The queue of one chain. ``signer_for(address)`` gives the key of a signer (engine or
    custodial account); ``effect_done(rows)`` says which reverted rows' effect is on chain."""

    def __init__(self, storage: Any, client: ChainClient, signer_for: SignerFor,
                 effect_done: EffectDone | None = None, *, batch: int = 500) -> None:
        self.storage = storage
        self.client = client
        self.chain_id = client.chain_id
        self.signer_for = signer_for
        self.effect_done = effect_done or (lambda rows: set())
        self.batch = batch

    # -- nonces and enqueueing ----------------------------------------------------------------
    def pending_count(self, address: str) -> int:
        answer = self.client.rpc.call("eth_getTransactionCount", [address, "pending"])
        return int(answer, 16) if isinstance(answer, str) else int(answer)

    def allocate(self, cur: Any, address: str, count: int = 1) -> int:
        """The next nonce of ``address`` (the first of ``count`` in a row); the row stays
        locked until the transaction ends."""
        address = address.lower()
        for _ in range(2):
            cur.execute("UPDATE nonces SET next_nonce = next_nonce + %s WHERE chain_id = %s "
                        "AND address = %s RETURNING next_nonce - %s",
                        (count, self.chain_id, address, count))
            row = cur.fetchone()
            if row is not None:
                return int(row[0])
            cur.execute("INSERT INTO nonces (chain_id, address, next_nonce) VALUES (%s, %s, %s) "
                        "ON CONFLICT DO NOTHING",
                        (self.chain_id, address, self.pending_count(address)))
        raise AssertionError("the nonce row vanished while allocating")

    def resync(self, cur: Any, address: str) -> None:
        """Move the counter of ``address`` up to the chain's pending count (never down)."""
        cur.execute("UPDATE nonces SET next_nonce = GREATEST(next_nonce, %s) WHERE chain_id = %s "
                    "AND address = %s", (self.pending_count(address), self.chain_id,
                                         address.lower()))

    def enqueue(self, cur: Any, signer: Signer, call: Call, *, kind: str,
                subject: str | None = None, request_id: str | None = None,
                nonce: int | None = None, gas_price: int | None = None) -> int:
        """Sign ``call`` with the next nonce of ``signer`` (or ``nonce``) and queue it; returns
        the row id.

        Call inside ``storage.transaction()`` together with whatever the transaction is for.
        """
        (id_,) = self.enqueue_many(cur, signer, [Queued(call, kind, subject, request_id)],
                                   nonce=nonce, gas_price=gas_price)
        return id_

    def enqueue_many(self, cur: Any, signer: Signer, items: Sequence[Queued], *,
                     nonce: int | None = None, gas_price: int | None = None) -> list[int]:
        """Sign every item with the next nonces of ``signer`` (in their order; from
        ``nonce`` if given) and queue them, a few statements for all; returns their row ids.

        One counter update takes every nonce, so the row lock is held once; call inside
        ``storage.transaction()`` together with whatever the transactions are for.
        """
        if not items:
            return []
        first = self.allocate(cur, signer.address, len(items)) if nonce is None else nonce
        price = gas_price or self.client.gas_price()
        now, sender = time.time(), signer.address.lower()
        rows = []
        for n, item in enumerate(items, first):
            signed = signer.sign(item.call, nonce=n, gas_price=price, chain_id=self.chain_id)
            call = item.call
            rows.append((self.chain_id, sender, n, item.kind, item.subject, item.request_id,
                         call.to.lower() if call.to else None, call.data, call.value, call.gas,
                         price, signed.raw, signed.tx_hash, QUEUED, now, now))
        by_nonce: dict[int, int] = {}
        for i in range(0, len(rows), ROWS_PER_INSERT):
            chunk = rows[i:i + ROWS_PER_INSERT]
            cur.execute(
                "INSERT INTO txs (chain_id, signer, nonce, kind, subject, request_id, to_address, "
                "data, value, gas, gas_price, raw, tx_hash, status, created_at, updated_at) "
                f"VALUES {values(16, len(chunk))} RETURNING id, nonce",
                [v for row in chunk for v in row])
            # (by nonce: neither database promises RETURNING rows in VALUES order)
            by_nonce.update((int(n), int(id_)) for id_, n in cur.fetchall())
        return [by_nonce[n] for n in range(first, first + len(items))]

    def requeue(self, cur: Any, row: TxRow, *, error_class: str, error: str,
                fresh_nonce: bool, gas: int | None = None, gas_price: int | None = None) -> None:
        """Sign ``row`` again (same or fresh nonce, maybe more gas or a higher price)."""
        signer = self.signer_for(row.signer)
        nonce = self.allocate(cur, row.signer) if fresh_nonce else row.nonce
        price = gas_price or row.gas_price
        call = row.call(gas)
        signed = signer.sign(call, nonce=nonce, gas_price=price, chain_id=self.chain_id)
        # with the same nonce, an earlier version may still be mined: remember its hash
        replaced = [] if fresh_nonce else [h for h in row.hashes if h != signed.tx_hash]
        cur.execute("UPDATE txs SET nonce = %s, gas = %s, gas_price = %s, raw = %s, tx_hash = %s, "
                    "replaced = %s, status = %s, error_class = %s, error = %s, "
                    "attempts = attempts + 1, updated_at = %s WHERE id = %s",
                    (nonce, call.gas, price, signed.raw, signed.tx_hash, replaced, QUEUED,
                     error_class, error[:500], time.time(), row.id))
        log.info("tx %d (%s) re-signed after %s: nonce %d, gas %d, price %d", row.id, row.kind,
                 error_class, nonce, call.gas, price)

    # -- dispatcher -----------------------------------------------------------------------------
    def dispatch(self) -> int:
        """Broadcast queued transactions (one batch of at most :data:`BLOCK_TXS`, committed
        as sent before the next is claimed); returns how many the node took."""
        with self.storage.transaction() as cur:
            cur.execute(f"SELECT {_COLUMNS} FROM txs WHERE chain_id = %s AND status = %s "
                        "ORDER BY signer, nonce LIMIT %s FOR UPDATE SKIP LOCKED",
                        (self.chain_id, QUEUED, min(self.batch, BLOCK_TXS)))
            rows = [_row(r) for r in cur.fetchall()]
            if not rows:
                return 0
            # the tracker mines (a dev node mines when asked): the next batch goes out meanwhile
            errors = self.client.broadcast([r.raw for r in rows], mine=False)
            taken = [r.id for r, e in zip(rows, errors, strict=True) if e is None]
            self._set_status(cur, taken, SENT)
            refused = [(r, e) for r, e in zip(rows, errors, strict=True) if e is not None]
            if refused:
                self._refused(cur, refused)
            return len(taken)

    def _refused(self, cur: Any, refused: Sequence[tuple[TxRow, str]]) -> None:
        nonce_rows = [r for r, e in refused if classify(e) == NONCE_TOO_LOW]
        mined = self._mined_versions(nonce_rows)
        resynced: set[str] = set()
        for row, message in refused:
            kind = classify(message)
            log.warning("tx %d (%s, nonce %d) refused: %s [%s]", row.id, row.kind, row.nonce,
                        message, kind)
            if kind == NONCE_TOO_LOW and row.id in mined:
                # a version of ours was mined: the tracker settles it
                cur.execute("UPDATE txs SET tx_hash = %s, status = %s, updated_at = %s "
                            "WHERE id = %s", (mined[row.id], SENT, time.time(), row.id))
            elif row.attempts >= MAX_ATTEMPTS or kind in (INSUFFICIENT_FUNDS, REJECTED):
                self._fail(cur, row, kind, message, release=True)
            elif kind == NONCE_TOO_LOW:
                if row.signer not in resynced:
                    self.resync(cur, row.signer)
                    resynced.add(row.signer)
                self.requeue(cur, row, error_class=kind, error=message, fresh_nonce=True)
            elif kind == UNDERPRICED:
                price = max(row.gas_price * 2, self.client.gas_price())
                self.requeue(cur, row, error_class=kind, error=message, fresh_nonce=False,
                             gas_price=price)
            else:  # OUT_OF_GAS: intrinsic gas too low
                self.requeue(cur, row, error_class=kind, error=message, fresh_nonce=False,
                             gas=row.gas * 2)

    def _mined_versions(self, rows: Sequence[TxRow]) -> dict[int, str]:
        """Row id -> the hash of its version that was mined or is pending on the node, for
        rows with one (then the nonce is ours after all)."""
        if not rows:
            return {}
        hashes = [h for r in rows for h in r.hashes]
        found = set(self.client.receipts(hashes)) | self.client.known(hashes)
        return {r.id: h for r in rows for h in r.hashes if h in found}

    def _fail(self, cur: Any, row: TxRow, kind: str, message: str, *, release: bool) -> None:
        cur.execute("UPDATE txs SET status = %s, error_class = %s, error = %s, updated_at = %s "
                    "WHERE id = %s", (FAILED, kind, message[:500], time.time(), row.id))
        if release:
            self._release(cur, row)

    def _release(self, cur: Any, row: TxRow) -> None:
        """Give back the nonce of a transaction that will never be mined."""
        cur.execute("UPDATE nonces SET next_nonce = %s WHERE chain_id = %s AND address = %s "
                    "AND next_nonce = %s", (row.nonce, self.chain_id, row.signer, row.nonce + 1))
        if cur.rowcount or row.kind == FILLER:
            return  # it was the last nonce handed out (or a filler failed: nothing more helps)
        signer = self.signer_for(row.signer)
        self.enqueue(cur, signer, Call(signer.address, b"", 0, FILLER_GAS), kind=FILLER,
                     subject=str(row.id), nonce=row.nonce)

    # -- tracker --------------------------------------------------------------------------------
    def track(self) -> int:
        """Settle sent transactions from their receipts; returns how many were settled."""
        with self.storage.transaction() as cur:
            cur.execute(f"SELECT {_COLUMNS} FROM txs WHERE chain_id = %s AND status = %s "
                        "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
                        (self.chain_id, SENT, self.batch * 2))
            rows = [_row(r) for r in cur.fetchall()]
            if not rows:
                return 0
            if self.client.explicit_mining:
                self.client.mine()  # a dev node mines only when asked (the dispatcher does not)
            receipts = self._receipts([h for r in rows for h in r.hashes])
            unmined = self._unmined(rows, receipts)
            self._settle(cur, [r for r in rows if r not in unmined], receipts)
            self._rebroadcast(cur, unmined)
            return len(rows) - len(unmined)

    @staticmethod
    def _unmined(rows: Sequence[TxRow], receipts: dict[str, dict[str, Any]]) -> list[TxRow]:
        return [r for r in rows if not any(h in receipts for h in r.hashes)]

    def _receipts(self, hashes: Sequence[str]) -> dict[str, dict[str, Any]]:
        answers = self.client.rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
        return {h: a for h, a in zip(hashes, answers, strict=True)
                if isinstance(a, dict) and a.get("blockNumber")}

    def _settle(self, cur: Any, rows: Sequence[TxRow], receipts: dict[str, dict[str, Any]]
                ) -> None:
        """``rows`` all have a mined version (its hash becomes the row's)."""
        done: list[tuple[int, int, str]] = []
        reverted: list[tuple[TxRow, int, int, str]] = []
        for row in rows:
            version = next(h for h in row.hashes if h in receipts)
            rc = receipts[version]
            block, ok = int(rc["blockNumber"], 16), int(rc.get("status", "0x1"), 16) == 1
            if ok:
                done.append((row.id, block, version))
            else:
                reverted.append((row, block, int(rc.get("gasUsed", "0x0"), 16), version))
        effect = self.effect_done([r for r, _, _, _ in reverted]) if reverted else set()
        for row, block, used, version in reverted:
            if row.id in effect:
                done.append((row.id, block, version))
            elif used >= row.gas and row.attempts < MAX_ATTEMPTS:
                self.requeue(cur, row, error_class=OUT_OF_GAS, error=f"out of gas ({used})",
                             fresh_nonce=True, gas=row.gas * 2)
            else:
                self._fail(cur, row, REVERTED, f"reverted in block {block} (gas used {used} of "
                           f"{row.gas})", release=False)
        self._mark_mined(cur, done, {r.id: r.tx_hash for r in rows})

    def _mark_mined(self, cur: Any, done: Sequence[tuple[int, int, str]],
                    hashes: dict[int, str]) -> None:
        """``(row id, block, mined hash)`` as mined: one statement per block for the rows
        whose latest version was mined (nearly all), one per row for the others."""
        now = time.time()
        by_block: dict[int, list[int]] = {}
        for id_, block, version in done:
            if version == hashes.get(id_):
                by_block.setdefault(block, []).append(id_)
            else:
                cur.execute("UPDATE txs SET status = %s, block_number = %s, tx_hash = %s, "
                            "updated_at = %s WHERE id = %s", (MINED, block, version, now, id_))
        for block, ids in by_block.items():
            for i in range(0, len(ids), ROWS_PER_INSERT):
                chunk = ids[i:i + ROWS_PER_INSERT]
                cur.execute("UPDATE txs SET status = %s, block_number = %s, updated_at = %s "
                            f"WHERE id IN ({placeholders(len(chunk))})",
                            (MINED, block, now, *chunk))

    def _rebroadcast(self, cur: Any, rows: Sequence[TxRow]) -> None:
        """Sent transactions the node does not know (dropped): signed again with the same
        nonce at the current price; after MAX_ATTEMPTS they fail (the nonce is kept: a
        dropped transaction may still turn up)."""
        if not rows:
            return
        known = self.client.known([r.tx_hash for r in rows])
        lost = [r for r in rows if r.tx_hash not in known]
        if not lost:
            return
        log.info("%d sent transactions are unknown to the node; signing them again", len(lost))
        price = self.client.gas_price()
        for row in lost:
            if row.attempts >= MAX_ATTEMPTS:
                self._fail(cur, row, DROPPED, "the node dropped it every time", release=False)
            else:
                self.requeue(cur, row, error_class=DROPPED, error="unknown to the node",
                             fresh_nonce=False, gas_price=max(row.gas_price, price))

    # -- bookkeeping ----------------------------------------------------------------------------
    def load(self, cur: Any, id_: int) -> TxRow:
        """The queue row ``id_``."""
        cur.execute(f"SELECT {_COLUMNS} FROM txs WHERE id = %s", (id_,))
        return _row(cur.fetchone())

    def _set_status(self, cur: Any, ids: Sequence[int], status: str) -> None:
        if ids:
            cur.execute("UPDATE txs SET status = %s, updated_at = %s WHERE id IN "
                        f"({placeholders(len(ids))})", (status, time.time(), *ids))

    def counts(self) -> dict[str, int]:
        with self.storage.transaction() as cur:
            cur.execute("SELECT status, count(*) FROM txs WHERE chain_id = %s GROUP BY status",
                        (self.chain_id,))
            return {s: int(n) for s, n in cur.fetchall()}

    def open_count(self) -> int:
        """Transactions queued or sent (not yet settled)."""
        return self.count(QUEUED, SENT)

    def count(self, *statuses: str) -> int:
        """Transactions in any of ``statuses``."""
        with self.storage.transaction() as cur:
            cur.execute("SELECT count(*) FROM txs WHERE chain_id = %s AND status IN "
                        f"({placeholders(len(statuses))})", (self.chain_id, *statuses))
            return int(cur.fetchone()[0])


class QueueLoop:
    """Runs the dispatcher and the tracker until stopped, each in a thread of its own (so the
    node takes one batch while the tracker reads the receipts of the one before).

    The dispatcher goes on at once while a block's worth (:data:`BLOCK_TXS`) or more is
    queued, waits ``gather`` seconds while less is (more comes: a trickle of single requests
    is sent a few at a time, not one block each), and when nothing is, until :meth:`wake`
    (the engine of this process queued a batch) or ``idle`` seconds (another process may
    have, or single requests came). The tracker looks when the dispatcher has sent
    something, every ``gather`` seconds while transactions are out, every ``idle`` seconds
    otherwise. Errors are logged and retried."""

    def __init__(self, queue: Callable[[], TxQueue], *, idle: float = 0.2,
                 gather: float = 0.05) -> None:
        self._queue = queue
        self.idle = idle
        self.gather = gather
        self.stopped = threading.Event()
        self._queued = threading.Event()  # a batch was queued: the dispatcher looks
        self._unseen = 0  # transactions queued in this process since the dispatcher looked
        self._sent = threading.Event()  # the dispatcher sent something: the tracker looks
        self._gather_since: float | None = None  # the tracker waits for fuller blocks since
        self._clock = time.monotonic
        self._threads = [
            threading.Thread(target=self._run, args=(self._dispatch, self._queued),
                             name="cic-custodial-dispatch", daemon=True),
            threading.Thread(target=self._run, args=(self._track, self._sent),
                             name="cic-custodial-track", daemon=True)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def is_alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def wake(self, count: int) -> None:
        """``count`` transactions were queued: once a batch's worth (:data:`BLOCK_TXS`) has
        been since the dispatcher last looked, it looks at once (single requests wait for its
        next look: woken for each, it would send every one alone)."""
        self._unseen += count
        if self._unseen >= BLOCK_TXS:
            self._queued.set()

    def _dispatch(self, queue: TxQueue) -> float:
        """One round of the dispatcher; the delay before the next."""
        self._unseen = 0  # (a race with wake() costs one early or late look, nothing more)
        sent = queue.dispatch()
        if sent:
            self._sent.set()
        if sent >= BLOCK_TXS:
            return 0.0  # a full batch: more is likely queued (no need to count)
        queued = queue.count(QUEUED)
        if queued >= BLOCK_TXS:
            return 0.0
        if queued:  # wait for more, whatever wakes meanwhile
            self.stopped.wait(self.gather)
            return 0.0
        return self.idle

    def _track(self, queue: TxQueue) -> float:
        if queue.client.explicit_mining and self._gathering(queue):
            return self.gather  # (woken as soon as the dispatcher sends more)
        settled = queue.track()
        out = queue.count(SENT)
        return 0.0 if settled and out else self.gather if out else self.idle

    def _gathering(self, queue: TxQueue) -> bool:
        """Whether the tracker should let the dispatcher send more before it mines: fewer
        than :data:`FULL_BLOCK` are out, more are queued, and it has not waited
        :data:`MAX_GATHER` seconds yet."""
        if queue.count(SENT) >= FULL_BLOCK or queue.count(QUEUED) == 0:
            self._gather_since = None
            return False
        now = self._clock()
        if self._gather_since is None:
            self._gather_since = now
        if now - self._gather_since >= MAX_GATHER:
            self._gather_since = None
            return False
        return True

    def _run(self, step: Callable[[TxQueue], float], wake: threading.Event) -> None:
        delay = 0.0
        while True:
            if delay > 0:
                wake.wait(delay)
            if self.stopped.is_set():
                return
            wake.clear()  # (a set after this wakes the next wait at once)
            try:
                delay = step(self._queue())
            except CicSeedError as exc:
                log.warning("custodial queue: %s; trying again", exc)
                delay = 1.0
            except Exception:  # a bug must not stop the queue for good
                log.exception("custodial queue: unexpected error; trying again")
                delay = 1.0

    def stop(self, timeout: float = 10.0) -> None:
        self.stopped.set()
        self._queued.set()
        self._sent.set()
        for thread in self._threads:
            if thread.is_alive() and threading.current_thread() is not thread:
                thread.join(timeout)
