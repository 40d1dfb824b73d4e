"""What the outbox needs of a receipt -- mined in which block, reverted or not -- for every
transaction of the blocks mined since it last looked, one ``trace_block`` call per block of at
least :data:`TRACE_FROM` transactions.

Why: anvil builds each receipt by walking its whole block, so ``eth_getTransactionReceipt``
(and ``eth_getBlockReceipts``) cost grows with the block's size: a block of 2,500 transactions
answered its receipts in ~0.9 s, one of 5,000 in ~7 s, where its ``trace_block`` took 30 and
60 ms. Blocks cost anvil time in proportion to the whole state (~0.6 s each at 100,000 users),
so a devnet is fastest with few, full blocks -- which per-hash receipts made slow.

The index reads from the block after the head at the process's first send (or the last
:data:`LOOKBACK` blocks, if it looks first). It is used on a node that mines only when asked (a
devnet: its blocks are the ones our clients ask for; a public node's blocks would bring
everybody's traces). A hash the index does not hold (not mined yet, mined before the index
began, evicted, or a node without ``trace_block``) is asked with ``eth_getTransactionReceipt``
as before, so the answer never depends on the index: it is only quicker.

Reorganisations: each look first checks that the newest block read still has the hash it had
(one ``eth_getBlockByNumber`` in the same batch as ``eth_blockNumber``); if not (an
``evm_revert``, a reorg), everything read is dropped and the last :data:`LOOKBACK` blocks are
read again.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from cic_seeding.chain.rpc import JsonRpc, NodeError
from cic_seeding.chain.tx import Receipt

log = logging.getLogger(__name__)

#: Blocks read again when the index starts, or after the chain it read was reorganised.
LOOKBACK = 8
#: Transactions held at most (the oldest blocks' are dropped first): bounds memory.
KEEP = 50_000
#: Block bodies (hashes only) asked per JSON-RPC batch; traces are asked a block at a time.
PAGE = 16
#: Blocks of fewer transactions are not read: their per-hash receipts are cheap (100 in 5 ms),
#: and a few transactions of many calls each (the batch path's, 100 accounts a transaction)
#: make large traces -- 10,000 accounts' blocks of traces grew the import by ~200 MB.
TRACE_FROM = 500
#: Blocks read at most in one look (older ones are left to per-hash receipts).
MAX_READ = 256


class BlockStatus:
    """``tx hash -> (ok, block number)`` of the recent blocks, from their traces."""

    def __init__(self, rpc: JsonRpc, *, keep: int = KEEP, lookback: int = LOOKBACK,
                 trace_from: int = TRACE_FROM) -> None:
        self.rpc = rpc
        self.keep = keep
        self.lookback = lookback
        self.trace_from = trace_from
        self.usable = True  # False once the node refused trace_block
        self._next: int | None = None  # the first block not read yet
        self._blocks: OrderedDict[int, tuple[str, list[str]]] = OrderedDict()  # n -> hash, txs
        self._found: dict[str, tuple[bool, int]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._found)

    def begin(self, head: Callable[[], int]) -> None:
        """Before this process's first send: read from the block after the head (where its
        transactions go) rather than :data:`LOOKBACK` blocks before the first look, which may
        come many blocks later."""
        with self._lock:
            if self._next is None and self.usable:
                self._next = head() + 1

    def lookup(self, hashes: Sequence[str]) -> dict[str, Receipt]:
        """Receipts (status and block) of those of ``hashes`` mined in the blocks read; the rest
        are the caller's to ask by hash."""
        with self._lock:
            if not self.usable:
                return {}
            try:
                self._refresh()
            except NodeError as exc:  # trace_block unknown, or refused: per-hash receipts
                log.info("node has no usable trace_block (%s): receipts are asked per "
                         "transaction", exc)
                self.usable = False
                self._clear()
                return {}
            out = {}
            for h in hashes:
                hit = self._found.get(h.lower())
                if hit is not None:
                    out[h] = Receipt(h, hit[0], hit[1])
            return out

    def _refresh(self) -> None:
        asks: list[tuple[str, Sequence[Any]]] = [("eth_blockNumber", [])]
        newest = next(reversed(self._blocks), None)
        if newest is not None:
            asks.append(("eth_getBlockByNumber", [hex(newest), False]))
        answers = self.rpc.batch(asks)
        for a in answers:
            if isinstance(a, Exception):
                raise a
        head = int(answers[0], 16)
        if newest is not None:
            block = answers[1]
            if not isinstance(block, dict) or block.get("hash") != self._blocks[newest][0]:
                log.debug("block %d is not the one read (a reorg or a revert): reading the "
                          "last %d blocks again", newest, self.lookback)
                self._clear()
        if self._next is None or self._next > head + 1 or head + 1 - self._next > MAX_READ:
            self._next = max(0, head + 1 - self.lookback)
        first, self._next = self._next, head + 1
        for start in range(first, head + 1, PAGE):
            numbers = range(start, min(start + PAGE, head + 1))
            bodies = self.rpc.batch([("eth_getBlockByNumber", [hex(n), False])
                                     for n in numbers])
            for n, body in zip(numbers, bodies, strict=True):
                if isinstance(body, Exception):
                    raise body
                txs = body.get("transactions") if isinstance(body, dict) else None
                if txs and len(txs) >= self.trace_from:
                    self._add(n, str(body["hash"]), self.rpc.call("trace_block", [hex(n)]) or [])
        while len(self._found) > self.keep and self._blocks:
            _, (_, txs) = self._blocks.popitem(last=False)
            for h in txs:
                self._found.pop(h, None)

    def _add(self, number: int, block_hash: str, traces: list[dict[str, Any]]) -> None:
        """The top-level trace of each transaction of block ``number`` (``error``: reverted)."""
        txs = []
        for t in traces:
            if not t.get("traceAddress") and t.get("transactionHash"):
                h = str(t["transactionHash"]).lower()
                self._found[h] = ("error" not in t, number)
                txs.append(h)
        self._blocks[number] = (block_hash, txs)

    def _clear(self) -> None:
        self._blocks.clear()
        self._found.clear()
        self._next = None
