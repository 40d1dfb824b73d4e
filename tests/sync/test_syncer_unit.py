"""The syncer and payer against an in-memory chain (a seam fake of SyncChain and of the
outbox's node; real state store, real signatures).

The fake keeps nonces, a pool, blocks with hashes and reorgs like a node; effects are counted
per (recipient, kind), so "paid exactly once" is checked directly.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from eth_utils import keccak

from cic_seeding.chain._txcodec import decode
from cic_seeding.chain.signer import Signer
from cic_seeding.errors import RpcError, RpcUnavailableError
from cic_seeding.outbox import Fees, Outbox, Policy, Seen
from cic_seeding.state import Payment, open_state_store
from cic_seeding.sync._ranges import LogReader
from cic_seeding.sync._reorg import rewind_point
from cic_seeding.sync.payer import Payer
from cic_seeding.sync.port import Call, Receipt
from cic_seeding.sync.syncer import PaymentPlan, Syncer, SyncOptions

KEY = Signer.from_key("99" * 32)
SIGNER = KEY.address.lower()


def user(i: int) -> str:
    return f"0x{i + 1:040x}"


class FakeChain:
    chain_key = "evm:test:1:fake"
    chain_id = 1
    signer = SIGNER

    def __init__(self, automine: bool = True) -> None:
        self.automine = automine
        self.blocks: list[tuple[str, list[str], list[str]]] = [("0xgenesis", [], [])]
        self.salt = 0
        self.nonce = 0  # next nonce to mine
        self.pool: dict[int, str] = {}  # nonce -> raw
        self.txs: dict[str, tuple[Call, int]] = {}  # raw -> (call, nonce)
        self.mined: dict[str, int] = {}  # hash -> block
        self.effects: Counter[tuple[str, str]] = Counter()
        self.index: set[str] = set()  # the AccountsIndex
        self.faucet_used: set[str] = set()
        self.drop_next_broadcast = False

    # -- driving ------------------------------------------------------------------------
    def register(self, *addresses: str) -> None:
        self._block(list(addresses), [])

    def _block(self, events: list[str], hashes: list[str]) -> None:
        self.salt += 1
        h = "0x" + hashlib.sha256(f"{len(self.blocks)}:{self.salt}".encode()).hexdigest()
        self.blocks.append((h, events, hashes))
        self.index.update(events)
        for tx in hashes:
            self.mined[tx] = len(self.blocks) - 1

    def mine(self) -> None:
        hashes = []
        while self.nonce in self.pool:
            raw = self.pool.pop(self.nonce)
            call, _ = self.txs[raw]
            kind, address, _ = call.data.decode().split(":")
            if kind == "faucet" and address in self.faucet_used:
                pass  # reverts
            else:
                self.effects[(address, kind)] += 1
                if kind == "faucet":
                    self.faucet_used.add(address)
            hashes.append(self.hash_of(raw))
            self.nonce += 1
        if hashes:
            self._block([], hashes)

    def reorg(self, depth: int, keep_events: bool = True) -> None:
        """Drop the last ``depth`` blocks; their registrations come back in new blocks, their
        transactions are forgotten (as anvil does) and their effects undone."""
        dropped = self.blocks[-depth:]
        del self.blocks[-depth:]
        for _, events, hashes in dropped:
            for tx in hashes:
                del self.mined[tx]
                raw = next(r for r in self.txs if self.hash_of(r) == tx)
                call, _ = self.txs[raw]
                kind, address, _ = call.data.decode().split(":")
                self.effects[(address, kind)] -= 1
                if kind == "faucet":
                    self.faucet_used.discard(address)
                self.nonce -= 1
            self.index.difference_update(events)
        for _, events, _ in dropped:
            if events and keep_events:
                self.register(*events)

    @staticmethod
    def hash_of(raw: str) -> str:
        return "0x" + keccak(bytes.fromhex(raw[2:])).hex()

    # -- SyncChain ----------------------------------------------------------------------
    def head(self) -> int:
        return len(self.blocks) - 1

    def block_hashes(self, numbers: Sequence[int]) -> dict[int, str]:
        return {n: self.blocks[n][0] for n in numbers if n < len(self.blocks)}

    def registrations(self, first: int, last: int) -> list[tuple[int, str]]:
        return [(n, a) for n in range(first, min(last, self.head()) + 1)
                for a in self.blocks[n][1]]

    def registered(self, addresses: Sequence[str]) -> set[str]:
        return {a for a in addresses if a in self.index}

    def faucet_paid(self, addresses: Sequence[str]) -> set[str]:
        return {a for a in addresses if a in self.faucet_used}

    def pending_nonce(self) -> int:
        n = self.nonce
        while n in self.pool:
            n += 1
        return n

    def sign(self, call: Call, nonce: int) -> tuple[str, str]:
        signed = KEY.sign(call, nonce=nonce, gas_price=1 + self.salt, chain_id=1)
        return signed.tx_hash, signed.raw

    def paid(self, kind: str, addresses: Sequence[str]) -> set[str]:
        return {a for a in addresses if self.effects[(a, kind)] > 0}

    # -- the outbox's node --------------------------------------------------------------
    @property
    def explicit_mining(self) -> bool:
        return not self.automine

    block_size = 250

    @contextmanager
    def lock(self, sender: str) -> Iterator[None]:
        yield

    def nonces(self, senders: Sequence[str]) -> dict[str, tuple[int, int]]:
        return {s: (self.nonce, self.pending_nonce()) for s in senders}

    def seen(self, hashes: Sequence[str]) -> dict[str, Seen]:
        known = self.known(hashes)
        return {h: Seen(h in known, h in self.mined) for h in hashes}

    def gas_price(self) -> int:
        return 1

    def fees(self) -> Fees:
        return Fees(1)

    def broadcast(self, raws: Sequence[str], *, mine: bool = True) -> list[str | None]:
        if self.drop_next_broadcast:
            self.drop_next_broadcast = False
            raise KeyboardInterrupt  # the process dies after recording, before sending
        out: list[str | None] = []
        for raw in raws:
            tx = decode(bytes.fromhex(raw[2:]))
            nonce = tx.nonce
            self.txs[raw] = (Call("0x" + tx.to.hex(), tx.data, tx.value, tx.gas), nonce)
            if nonce < self.nonce:
                out.append(None if self.hash_of(raw) in self.mined else "nonce too low")
            elif nonce in self.pool and self.pool[nonce] != raw:
                out.append("replacement transaction underpriced")
            else:
                self.pool[nonce] = raw
                out.append(None)
        if self.automine:
            self.mine()
        return out

    def receipts(self, tx_hashes: Sequence[str]) -> dict[str, Receipt]:
        return {h: Receipt(h, True, self.mined[h]) for h in tx_hashes if h in self.mined}

    def known(self, tx_hashes: Sequence[str]) -> set[str]:
        pooled = {self.hash_of(r) for r in self.pool.values()}
        return {h for h in tx_hashes if h in self.mined or h in pooled}


def build(p: Payment) -> Call:
    return Call(to="0x" + "00" * 20, data=f"{p.kind}:{p.address}:{p.amount}".encode())


N = 12
USERS = {user(i): user(i) for i in range(N)}
PLAN = PaymentPlan({user(i): 100 + i for i in range(N)}, faucet_amount=7, gas_gift=3)


@pytest.fixture
def chain() -> FakeChain:
    return FakeChain()


def make_syncer(tmp_path: Path, chain: FakeChain, **opts: object) -> Syncer:
    store = open_state_store(url=str(tmp_path / "state.db"))
    store.add_users("eth", [(i, user(i)) for i in range(N)])
    outbox = Outbox(store, chain, Policy(resend_after=0.0))  # type: ignore[arg-type]
    payer = Payer(store, "eth", chain, outbox, KEY, build)  # type: ignore[arg-type]
    options = SyncOptions(**{"poll": 0.0, "timeout": 5.0, "from_block": 0, **opts})  # type: ignore
    return Syncer("eth", chain, store, payer, PLAN, USERS, options)  # type: ignore[arg-type]


def assert_paid_once(chain: FakeChain) -> None:
    for i in range(N):
        for kind in ("fund", "faucet", "gas"):
            assert chain.effects[(user(i), kind)] == 1, (user(i), kind)


def test_pays_every_registered_user_once_and_exits(tmp_path: Path, chain: FakeChain) -> None:
    chain.register(*[user(i) for i in range(6)])
    chain.register("0x" + "ee" * 20)  # not ours: ignored
    chain.register(*[user(i) for i in range(6, N)])
    result = make_syncer(tmp_path, chain).run()
    assert result.ok, result.render_text()
    assert result.done == N and result.payments["fund"] == {"confirmed": N}
    assert_paid_once(chain)
    assert sum(1 for (a, _), n in chain.effects.items() if a == "0x" + "ee" * 20) == 0
    # a second run (a rescan from block 0) pays nothing again
    again = make_syncer(tmp_path, chain, from_block=0).run()
    assert again.ok
    assert_paid_once(chain)


def test_crash_between_record_and_send_resends_the_same_bytes(tmp_path: Path,
                                                                chain: FakeChain) -> None:
    chain.register(*[user(i) for i in range(N)])
    chain.drop_next_broadcast = True
    with pytest.raises(KeyboardInterrupt):
        make_syncer(tmp_path, chain).run()
    assert make_syncer(tmp_path, chain).run().ok
    assert_paid_once(chain)


def test_reorg_rolls_back_and_pays_once(tmp_path: Path, chain: FakeChain) -> None:
    chain.automine = True
    chain.register(*[user(i) for i in range(N)])
    syncer = make_syncer(tmp_path, chain)
    assert syncer.run().ok
    # registrations and payments reorganised away; registrations come back, payments do not
    chain.reorg(len(chain.blocks) - 1)
    assert sum(chain.effects.values()) == 0
    result = make_syncer(tmp_path, chain, from_block=None).run()
    assert result.ok and result.reorgs == 1, result.render_text()
    assert_paid_once(chain)


def test_unregistered_users_time_out(tmp_path: Path, chain: FakeChain) -> None:
    chain.register(user(0))
    result = make_syncer(tmp_path, chain, timeout=0.0).run()
    assert not result.ok and result.timed_out and result.waiting == N - 1 and result.done == 1


def test_foreign_sender_takes_our_nonce(tmp_path: Path, chain: FakeChain) -> None:
    chain.automine = False
    chain.register(*[user(i) for i in range(N)])
    syncer = make_syncer(tmp_path, chain)
    syncer._start()
    syncer._scan()
    syncer._pay()  # all pooled, not mined
    # another key holder replaces our pool with their own transactions at the same nonces
    foreign = {n: chain.sign(Call("0x" + "00" * 20, b"fund:0xforeign:1"), n)[1]
               for n in list(chain.pool)}
    for raw in foreign.values():
        tx = decode(bytes.fromhex(raw[2:]))
        chain.txs[raw] = (Call("0x" + tx.to.hex(), tx.data), tx.nonce)
    chain.pool = foreign
    chain.mine()
    syncer._settle()  # ours are unknown now and their nonces used: signed again
    chain.automine = True
    result = syncer.run()
    assert result.ok, result.render_text()
    assert_paid_once(chain)


def test_log_reader_splits_refused_ranges() -> None:
    calls = []

    def get_logs(first: int, last: int) -> list[int]:
        calls.append((first, last))
        if last - first >= 10:
            raise RpcError("query exceeds max block range 10")
        return list(range(first, last + 1))

    chunks = list(LogReader(get_logs, span=64).read(5, 50))
    assert [x for _, _, logs in chunks for x in logs] == list(range(5, 50))
    assert chunks[0][0] == 5 and chunks[-1][1] == 50
    with pytest.raises(RpcError, match="boom"):
        list(LogReader(lambda a, b: (_ for _ in ()).throw(RpcError("boom"))).read(0, 5))


def test_rewind_point() -> None:
    assert rewind_point({10: "0xa", 20: "0xb"}, {10: "0xa", 20: "0xb"}) is None
    assert rewind_point({10: "0xa", 20: "0xb"}, {10: "0xa", 20: "0xc"}) == 11
    assert rewind_point({10: "0xa", 20: "0xb"}, {10: "0xz"}) == 10
    assert rewind_point({10: "0xA"}, {10: "0xa"}) is None


def test_transient_errors_are_retried(tmp_path: Path, chain: FakeChain) -> None:
    chain.register(*[user(i) for i in range(N)])
    real_head, failures = chain.head, [2]

    def flaky_head() -> int:
        if failures[0]:
            failures[0] -= 1
            raise RpcUnavailableError("connection refused")
        return real_head()

    chain.head = flaky_head  # type: ignore[method-assign]
    syncer = make_syncer(tmp_path, chain)
    syncer.options = SyncOptions(**{**syncer.options.__dict__, "retries": 3})
    assert syncer.run().ok
    assert_paid_once(chain)


def test_log_reader_keeps_its_answers_small_where_logs_are_dense() -> None:
    """A block range holding many logs is followed by a smaller one: no answer holds much more
    than ``max_logs``, whatever the density (100 logs a block here, then none)."""
    spans = []

    def get_logs(first: int, last: int) -> list[tuple[int, int]]:
        spans.append(last - first + 1)
        return [(b, i) for b in range(first, min(last, 59) + 1) for i in range(100)]

    chunks = list(LogReader(get_logs, max_logs=250).read(0, 200))
    logs = [x for _, _, part in chunks for x in part]
    assert logs == [(b, i) for b in range(60) for i in range(100)]  # all, in order, once
    assert max(len(part) for _, _, part in chunks) <= 400  # one range of 4 blocks at most
    assert spans[:4] == [1, 2, 4, 2] and spans[-1] > 4  # grows again past the dense blocks
