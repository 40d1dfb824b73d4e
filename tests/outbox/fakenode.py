"""A tiny node for the outbox's decision logic: real signed transactions (decoded, not
trusted), per-sender nonces, a pool, a base fee, blocks and receipts -- and the faults a real
node commits: it loses transactions, lets another transaction take a nonce, prices ours out.

A transaction's effect is its call data, counted once per mined transaction in ``effects``,
so "exactly once" is checked directly.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from eth_utils import keccak

from cic_seeding.chain._txcodec import decode
from cic_seeding.chain.tx import Receipt
from cic_seeding.outbox import Fees, Seen


def tx_hash(raw: str) -> str:
    return "0x" + keccak(bytes.fromhex(raw.removeprefix("0x"))).hex()


class FakeNode:
    chain_id = 1
    chain_key = "1-fake"

    def __init__(self, *, automine: bool = False) -> None:
        self.automine = automine
        self.asked: list[int] = []  # len(broadcasts) at each broadcast asking for a block
        self._lock = threading.Lock()  # the outbox broadcasts from helper threads
        self.latest: Counter[str] = Counter()  # sender -> nonces used on chain
        self.pool: dict[tuple[str, int], str] = {}  # (sender, nonce) -> raw
        self.mined: dict[str, tuple[int, bool]] = {}  # hash -> (block, ok)
        self.effects: Counter[bytes] = Counter()  # call data of mined transactions
        self.block = 0
        self.base_fee: int | None = None
        self.price = 10
        self.broadcasts: list[str] = []  # every raw received, in order
        self.lose: set[str] = set()  # hashes taken and then forgotten (once each)
        self.starve: set[str] = set()  # hashes held in the pool, never pending nor mined
        self.revert: set[bytes] = set()  # call data that reverts
        self.mines = 0

    @property
    def explicit_mining(self) -> bool:
        return not self.automine

    block_size = 250

    # -- node ----------------------------------------------------------------------------
    @contextmanager
    def lock(self, sender: str) -> Iterator[None]:
        yield

    def pending(self, sender: str) -> int:
        n = self.latest[sender]
        while (sender, n) in self.pool and tx_hash(self.pool[(sender, n)]) not in self.starve:
            n += 1
        return n

    def nonces(self, senders: Sequence[str]) -> dict[str, tuple[int, int]]:
        return {s: (self.latest[s], self.pending(s)) for s in senders}

    def seen(self, hashes: Sequence[str]) -> dict[str, Seen]:
        pooled = {tx_hash(r): r for r in self.pool.values()}
        out = {}
        for h in hashes:
            if h in self.mined:
                out[h] = Seen(True, True)
            elif h in pooled:
                out[h] = Seen(True, False, decode(bytes.fromhex(pooled[h][2:])).max_fee)
            else:
                out[h] = Seen(False)
        return out

    def receipts(self, hashes: Sequence[str]) -> dict[str, Receipt]:
        return {h: Receipt(h, self.mined[h][1], self.mined[h][0]) for h in hashes
                if h in self.mined}

    def broadcast(self, raws: Sequence[str], *, mine: bool = True) -> list[str | None]:
        with self._lock:
            out: list[str | None] = []
            for raw in raws:
                self.broadcasts.append(raw)
                out.append(self._take(raw))
            if mine and not self.automine:
                self.asked.append(len(self.broadcasts))
            if self.automine:
                self.mine()
            return out

    def _take(self, raw: str) -> str | None:
        tx = decode(bytes.fromhex(raw[2:]))
        h = tx_hash(raw)
        if h in self.mined or self.pool.get((tx.sender, tx.nonce)) == raw:
            return None  # already known
        if tx.nonce < self.latest[tx.sender]:
            return "nonce too low"
        if self.base_fee is not None and tx.max_fee < self.base_fee:
            return "max fee per gas less than block base fee"
        old = self.pool.get((tx.sender, tx.nonce))
        if old is not None and tx.max_fee < decode(bytes.fromhex(old[2:])).max_fee * 1.1:
            return "replacement transaction underpriced"
        if h in self.lose:
            self.lose.discard(h)
            return None  # taken, then lost
        self.pool[(tx.sender, tx.nonce)] = raw
        return None

    def mine(self) -> None:
        self.mines += 1
        self.block += 1
        progress = True
        while progress:
            progress = False
            for (sender, nonce), raw in sorted(self.pool.items()):
                tx = decode(bytes.fromhex(raw[2:]))
                if nonce != self.latest[sender] or tx_hash(raw) in self.starve or (
                        self.base_fee is not None and tx.max_fee < self.base_fee):
                    continue
                del self.pool[(sender, nonce)]
                ok = tx.data not in self.revert
                if ok:
                    self.effects[tx.data] += 1
                self.mined[tx_hash(raw)] = (self.block, ok)
                self.latest[sender] += 1
                progress = True

    def gas_price(self) -> int:
        return self.price

    def fees(self) -> Fees:
        return Fees(self.price, self.base_fee, 1 if self.base_fee is not None else 0)

    def head(self) -> int:
        return self.block

    # -- faults --------------------------------------------------------------------------
    def drop(self, h: str) -> None:
        """Forget a pooled transaction (anvil_dropTransaction)."""
        for key, raw in list(self.pool.items()):
            if tx_hash(raw) == h:
                del self.pool[key]

    def take_nonce(self, raw: str) -> None:
        """Mine ``raw`` (another transaction at one of our nonces) before anything else."""
        tx = decode(bytes.fromhex(raw[2:]))
        self.pool[(tx.sender, tx.nonce)] = raw
        self.mine()

    def unmine(self, h: str) -> None:
        """A reorg drops the block of ``h``; the node forgets the transaction."""
        raw = next(r for r in self.broadcasts if tx_hash(r) == h)
        tx = decode(bytes.fromhex(raw[2:]))
        del self.mined[h]
        self.effects[tx.data] -= 1
        self.latest[tx.sender] -= 1
