"""A data directory on a real devnet, registrations made by the test, and what the chain says.

The test registers users itself (``AccountsIndex.add`` from the devnet's signer, as the eth
importer does) so it chooses the blocks, and reads the payments back from the chain's own logs:
token ``Transfer`` (and ``Mint``) events per recipient, native balances for the gas gift.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cic_devnet.devnet import Devnet
from cic_seeding.chain.client import ChainClient
from cic_seeding.chain.connect import connect
from cic_seeding.chain.registry import ACCOUNTS_INDEX, TOKEN, CicNetwork
from cic_seeding.chain.signer import SignedTx
from cic_seeding.chain.tx import Call
from cic_seeding.config import Settings
from cic_seeding.datadir import DataDir
from cic_seeding.generate.generator import GenerateOptions, generate
from cic_seeding.state import (
    FAUCET,
    FUND,
    GAS,
    Cursor,
    Payment,
    StateStore,
    Status,
    open_state_store,
)
from cic_seeding.sync.run import run_sync
from cic_seeding.sync.syncer import SyncOptions, SyncResult
from cic_seeding.units import dataset_to_token
from tests.conftest import devnet_settings

T = TypeVar("T")
ZERO = "0x" + "00" * 20
TRANSFER = TOKEN.topic("Transfer")
MINT = TOKEN.topic("Mint")
ADD_GAS = 120_000


def wait_until(condition: Callable[[], T], *, what: str, timeout: float = 60.0) -> T:
    """Poll ``condition`` (chain or store state) until it is truthy; AssertionError naming
    ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f}s")
        pause.wait(0.05)  # polling interval of an observable condition, bounded above


def _address(topic: str) -> str:
    return "0x" + topic[-40:].lower()


@dataclass
class World:
    """One data directory of ``count`` users on a devnet, the syncer not run yet."""

    devnet: Devnet
    settings: Settings
    network: CicNetwork
    users: list[str]  # 0x lower-case, data directory order
    opening: dict[str, int]  # opening balance per user, token smallest unit
    faucet_amount: int
    first_block: int  # the head when the world was made: no payment can be below it
    mint: bool = False
    options: dict[str, Any] = field(default_factory=dict)  # SyncOptions for every sync()

    @property
    def client(self) -> ChainClient:
        return self.network.client

    @property
    def signer(self) -> str:
        assert self.client.signer is not None
        return self.client.signer.address.lower()

    @property
    def token(self) -> str:
        return self.network.token().address.lower()

    @property
    def faucet(self) -> str:
        return self.network.faucet.lower()

    @property
    def chain_key(self) -> str:
        return self.settings.chain_spec

    # -- the chain ---------------------------------------------------------------------------
    def head(self) -> int:
        return self.client.head()

    def mine(self, blocks: int = 1) -> int:
        self.client.mine(blocks)
        return self.head()

    def sign_registrations(self, addresses: Iterable[str], index: str | None = None,
                           first_nonce: int | None = None) -> list[SignedTx]:
        """``add(address)`` transactions signed with consecutive nonces (not sent)."""
        nonce = self.client.pending_nonce() if first_nonce is None else first_nonce
        return [self.client.sign(Call(index or self.network.accounts_index,
                                      ACCOUNTS_INDEX.encode("add", a), gas=ADD_GAS), nonce + i)
                for i, a in enumerate(addresses)]

    def register(self, addresses: Iterable[str], index: str | None = None) -> int:
        """Register ``addresses`` on ``index`` (default: the registry's AccountsIndex); returns
        the block they were mined in (one block, unless a syncer running meanwhile mined in
        the middle of the batch: then the last)."""
        calls = [Call(index or self.network.accounts_index, ACCOUNTS_INDEX.encode("add", a),
                      gas=ADD_GAS) for a in addresses]
        sent = self.client.send(calls)  # one batch, then one block mined
        assert [e for _, e in sent if e is not None] == []
        receipts = self.client.wait([s.tx_hash for s, _ in sent], timeout=60)
        assert all(r.ok for r in receipts.values())
        return max(r.block_number for r in receipts.values())

    def nonce(self) -> int:
        """The signer's mined transaction count."""
        return int(self.client.rpc.call("eth_getTransactionCount", [self.signer, "latest"]), 16)

    def transfers(self) -> dict[str, Counter[tuple[str, int]]]:
        """Recipient -> Counter of (sender, value) of every token Transfer event."""
        out: dict[str, Counter[tuple[str, int]]] = {}
        for e in self.client.logs(self.token, TRANSFER, self.first_block, self.head()):
            to = _address(e["topics"][2])
            out.setdefault(to, Counter())[(_address(e["topics"][1]), int(e["data"], 16))] += 1
        return out

    def mints(self) -> dict[str, Counter[tuple[str, int]]]:
        """Beneficiary -> Counter of (minter, value) of every token Mint event."""
        out: dict[str, Counter[tuple[str, int]]] = {}
        for e in self.client.logs(self.token, MINT, self.first_block, self.head()):
            to = _address(e["topics"][2])
            out.setdefault(to, Counter())[(_address(e["topics"][1]), int(e["data"], 16))] += 1
        return out

    def balances(self, addresses: list[str]) -> dict[str, int]:
        got = self.client.call_many([(self.token, TOKEN.fn("balanceOf"), (a,))
                                     for a in addresses])
        return dict(zip(addresses, got, strict=True))

    def native(self, addresses: list[str]) -> dict[str, int]:
        return dict(zip(addresses, self.client.native_balances(addresses), strict=True))

    # -- the syncer and its store ------------------------------------------------------------
    @contextmanager
    def store(self) -> Iterator[StateStore]:
        store = open_state_store(self.settings)
        try:
            yield store
        finally:
            store.close()

    def begin(self) -> int:
        """Start the syncer's cursor at the head, as the importer does when it begins."""
        head = self.head()
        with self.store() as store:
            store.init_cursor("eth", self.chain_key, head)
        return head

    def cursor(self) -> Cursor | None:
        with self.store() as store:
            return store.cursor("eth", self.chain_key)

    def ledger(self) -> list[Payment]:
        with self.store() as store:
            return store.payments("eth")

    def sync_options(self, **options: Any) -> SyncOptions:
        return SyncOptions(**{"timeout": 60.0, "poll": 0.02, **self.options, **options})

    def sync(self, network: CicNetwork | None = None, **options: Any) -> SyncResult:
        return run_sync(self.settings, "eth", self.sync_options(**options), mint=self.mint,
                        network=network)

    def signing_anew_changes_bytes(self) -> CicNetwork:
        """A network for the syncer on which every signature gets a gas price of its own (one
        wei more each time): a payment signed again never has its earlier bytes, so a recorded
        hash mined later proves the recorded bytes were sent again."""
        network = connect(self.settings)
        prices = itertools.count(network.client.gas_price())
        network.client.gas_price = lambda: next(prices)  # type: ignore[method-assign]
        return network

    def expected(self, user: str) -> dict[str, int]:
        """Payment kind -> amount owed to ``user``."""
        owed = {FUND: self.opening[user], FAUCET: self.faucet_amount,
                GAS: self.settings.gas_gift}
        return {k: v for k, v in owed.items() if v > 0}


def make_world(devnet: Devnet, root: Path, count: int, seed: int, *, mint: bool = False,
               via: str | None = None, **flags: object) -> World:
    """``count`` generated users; ``via``: the JSON-RPC URL the syncer uses (a proxy) instead
    of the devnet's (the test itself always talks to the devnet directly)."""
    data = root / "data"
    generate(GenerateOptions(directory=data, count=count, seed=seed, workers=1))
    settings = devnet_settings(devnet, data, **flags)
    network = connect(settings)
    if via is not None:
        settings = settings.replace(rpc_url=via)
    dd = DataDir(data)
    decimals = dd.manifest().decimals
    token = network.token()
    opening = {"0x" + a.lower().removeprefix("0x"): dataset_to_token(v, decimals, token.decimals)
               for a, v in dd.balances().items()}
    users = [u.address.lower() for u in dd.users()]
    assert set(users) == set(opening)
    return World(devnet, settings, network, users, opening, network.faucet_payout(token),
                 network.client.head(), mint)


# -- assertions --------------------------------------------------------------------------------
def assert_paid_once(world: World, paid: Iterable[str], unpaid: Iterable[str] = ()) -> None:
    """Each of ``paid`` got every payment it is owed exactly once, read from the chain (one
    Transfer per token payment, Mint with ``--mint``, the gas gift as its native balance) and
    recorded once as confirmed in the ledger; each of ``unpaid`` got nothing at all."""
    paid, unpaid = list(paid), list(unpaid)
    transfers, mints = world.transfers(), world.mints()
    balances, native = world.balances(paid + unpaid), world.native(paid + unpaid)
    ledger = world.ledger()
    rows = Counter((p.address, p.kind) for p in ledger)
    for user in paid:
        owed = world.expected(user)
        want: Counter[tuple[str, int]] = Counter()
        if FUND in owed:
            want[(ZERO if world.mint else world.signer, owed[FUND])] += 1
        if FAUCET in owed:
            want[(world.faucet, owed[FAUCET])] += 1
        assert transfers.get(user, Counter()) == want, f"Transfer events to {user}"
        want_mints = Counter({(world.signer, owed[FUND]): 1}) if world.mint and FUND in owed \
            else Counter()
        assert mints.get(user, Counter()) == want_mints, f"Mint events to {user}"
        assert balances[user] == owed.get(FUND, 0) + owed.get(FAUCET, 0), user
        assert native[user] == owed.get(GAS, 0), f"native balance of {user}"
        assert {k: rows[(user, k)] for k in (FUND, FAUCET, GAS)} == \
            {k: int(k in owed) for k in (FUND, FAUCET, GAS)}, f"ledger rows of {user}"
    by_user = {(p.address, p.kind): p for p in ledger}
    assert {(a, k): p.status for (a, k), p in by_user.items() if a in paid} == \
        {(u, k): Status.CONFIRMED for u in paid for k in world.expected(u)}
    for user in unpaid:
        assert user not in transfers and user not in mints, f"{user} was paid tokens"
        assert balances[user] == 0 and native[user] == 0, f"{user} holds something"
        assert not any(a == user for a, _ in rows), f"{user} is in the ledger"
    assert len(ledger) == sum(len(world.expected(u)) for u in paid), "ledger rows"


class Follower:
    """``run_sync`` with ``follow`` in a thread of the test; :meth:`stop` ends it (the stop
    event) and returns its result. Waits fail at once if the thread died."""

    def __init__(self, world: World, **options: Any) -> None:
        self.world = world
        self.stop_event = threading.Event()
        self.result: SyncResult | None = None
        self.error: BaseException | None = None
        self.options = world.sync_options(follow=True, timeout=None, **options)
        self.thread = threading.Thread(target=self._run, name="syncer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = run_sync(self.world.settings, "eth", self.options,
                                   mint=self.world.mint, stop=self.stop_event)
        except BaseException as exc:  # handed to the test thread by wait() and stop()
            self.error = exc

    def wait(self, condition: Callable[[], T], *, what: str, timeout: float = 60.0) -> T:
        def alive_and(cond: Callable[[], T]) -> T:
            if not self.thread.is_alive():
                raise AssertionError(f"the syncer ended before {what}: "
                                     f"{self.error!r} {self.result}") from self.error
            return cond()
        return wait_until(lambda: alive_and(condition), what=what, timeout=timeout)

    def stop(self, timeout: float = 30.0) -> SyncResult:
        self.stop_event.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the syncer did not stop within {timeout:.0f}s"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


@contextmanager
def following(world: World, **options: Any) -> Iterator[Follower]:
    """A :class:`Follower` that is stopped on the way out, whatever happened."""
    follower = Follower(world, **options)
    try:
        yield follower
    finally:
        follower.stop_event.set()
        follower.thread.join(30)


def confirmed(world: World, users: Iterable[str]) -> bool:
    """Every payment owed to ``users`` is in the ledger as confirmed."""
    want = {(u, k) for u in users for k in world.expected(u)}
    with world.store() as store:
        done = {(p.address, p.kind) for p in store.payments("eth", [Status.CONFIRMED])}
    return want <= done


def holdings_match(world: World, users: list[str]) -> bool:
    """Every one of ``users`` holds exactly what it is owed (tokens and gas), on chain."""
    balances, native = world.balances(users), world.native(users)
    return all(balances[u] == world.expected(u).get(FUND, 0) + world.expected(u).get(FAUCET, 0)
               and native[u] == world.expected(u).get(GAS, 0) for u in users)
