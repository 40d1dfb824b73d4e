"""The custodial engine in tests: a prepared engine, its workers, and what it left behind."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_utils import keccak

from cic_devnet.anvil import dev_key
from cic_devnet.custodial.config import engine_config
from cic_devnet.custodial.devnet import EngineOptions, EngineSetup, prepare_engine
from cic_devnet.custodial.engine import Engine, open_engine
from cic_devnet.custodial.process import WorkerProcess, start_workers, wait_ready
from cic_devnet.devnet import Devnet
from cic_seeding.chain.client import ChainClient
from cic_seeding.chain.connect import connect
from cic_seeding.chain.registry import ACCOUNTS_INDEX, ADDRESS_ADDED, FAUCET, TOKEN
from cic_seeding.chain.rpc import JsonRpc
from cic_seeding.chain.signer import Signer
from cic_seeding.config import Settings, load_settings
from cic_seeding.custodial import TASK_STATUS, engine_client
from cic_seeding.datadir import DataDir
from cic_seeding.generate.generator import GenerateOptions, generate
from cic_seeding.importers.base import ImportResult
from cic_seeding.importers.cic_eth import CicEthImporter
from cic_seeding.state import FUND, Status, norm, open_state_store
from tests.conftest import devnet_settings
from tests.pg import PG_URL, sql_in

REDIS_URL = "redis://127.0.0.1:6379/0"
#: topic 0 of ERC20 ``Transfer(address,address,uint256)``
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"


def deployer(devnet: Devnet) -> ChainClient:
    return ChainClient(JsonRpc(devnet.rpc_url), signer=Signer.from_key(dev_key(0)),
                       explicit_mining=True)


@dataclass
class Harness:
    """A prepared engine (schema, signer, queue) whose workers a test starts and kills."""

    devnet: Devnet
    setup: EngineSetup
    root: Path
    schema: str
    workers: list[WorkerProcess] = field(default_factory=list)
    _engines: list[Engine] = field(default_factory=list)

    @classmethod
    def prepare(cls, devnet: Devnet, root: Path, schema: str,
                broker_url: str = REDIS_URL) -> Harness:
        options = EngineOptions(broker_url=broker_url, db_url=PG_URL, schema=schema,
                                queue=f"test_{uuid.uuid4().hex[:12]}")
        setup = prepare_engine(devnet.directory, deployer(devnet), devnet.registry, options,
                               chain_spec=devnet.info["chain_spec"])
        return cls(devnet, setup, root, schema)

    @property
    def broker_url(self) -> str:
        return self.setup.broker_url

    def start(self, count: int = 1, concurrency: int = 4, **env: str) -> list[WorkerProcess]:
        started = start_workers({**self.setup.env, **env}, count=count,
                                concurrency=concurrency, log_dir=self.root / "workers",
                                prefix=f"w{len(self.workers)}")
        self.workers += started
        wait_ready(started, self.broker_url, env.get("CIC_CUSTODIAL_QUEUE", self.setup.queue),
                   timeout=60)
        return started

    def ready(self, timeout: float = 60) -> None:
        """Wait until a live worker answers (e.g. once it has reconnected to Redis)."""
        wait_ready([w for w in self.workers if w.alive()], self.broker_url, self.setup.queue,
                   timeout=timeout)

    def engine(self) -> Engine:
        """The engine in this process (plain functions, no worker)."""
        engine = open_engine(engine_config(self.engine_settings()))
        self._engines.append(engine)
        return engine

    def engine_settings(self) -> Settings:
        return load_settings({}, config_file=None, environ=self.setup.env)

    def settings(self, data_dir: Path, **flags: object) -> Settings:
        """Client settings for a data directory imported through this engine."""
        return devnet_settings(self.devnet, data_dir, **{
            "custodial_broker_url": self.broker_url, "custodial_queue": self.setup.queue,
            **flags})

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return sql_in(self.schema, query, params)

    def count(self, query: str) -> int:
        return int(self.sql(query)[0][0])

    def stop(self) -> None:
        for w in self.workers:
            w.stop()
        for e in self._engines:
            e.close()
        purge_queue(self.broker_url, self.setup.queue)


def purge_queue(broker_url: str, queue: str) -> None:
    """Delete what a test's queue left in Redis (messages restored after the workers went)."""
    import redis

    client = redis.Redis.from_url(broker_url, socket_connect_timeout=2)
    try:
        client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
    except redis.RedisError:
        pass  # a test's own Redis may be gone already
    finally:
        client.close()


def pump(engine: Engine, until: Callable[[], bool] | None = None, rounds: int = 50) -> None:
    """Run the dispatcher and tracker in this thread until the queue is empty (or ``until``)."""
    for _ in range(rounds):
        engine.queue.dispatch()
        engine.queue.track()
        if (until() if until is not None else engine.queue.open_count() == 0):
            return
    raise AssertionError(f"the queue did not settle: {engine.queue.counts()}")


def make_data(root: Path, count: int, seed: int) -> Path:
    data = root / "data"
    generate(GenerateOptions(directory=data, count=count, seed=seed, workers=2))
    return data


def run_import(settings: Settings, **kw: Any) -> ImportResult:
    importer = CicEthImporter(settings, **kw)
    try:
        return importer.run()
    finally:
        importer.close()


class Background:
    """``run_import`` in a thread, so a test can break things while it runs."""

    def __init__(self, settings: Settings) -> None:
        self.result: ImportResult | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(settings,), daemon=True)
        self.thread.start()

    def _run(self, settings: Settings) -> None:
        try:
            self.result = run_import(settings)
        except BaseException as exc:  # handed to the test through join()
            self.error = exc

    def join(self, timeout: float) -> ImportResult:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the import did not end within {timeout}s"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


@dataclass(frozen=True)
class CustodialLedger:
    """What the chain holds for every confirmed custodial user (keyed by target)."""

    targets: dict[str, str]  # target -> generated address
    expected: dict[str, int]
    balances: dict[str, int]
    native: dict[str, int]
    registered: dict[str, bool]
    faucet_used: dict[str, bool]
    index_entries: int
    signer_tokens: int
    faucet_tokens: int
    faucet_amount: int
    engine_tokens: int  # the engine's signer: floats in, custodial transfers out

    def wrong_balances(self) -> dict[str, tuple[int, int]]:
        return {t: (self.balances[t], self.expected[t]) for t in self.targets
                if self.balances[t] != self.expected[t]}


def engine_signer(settings: Settings) -> str:
    """The address the custodial engine signs with (0x lower)."""
    client = engine_client(settings)
    try:
        return str(client.call(TASK_STATUS, {}, timeout=30)["signer"]).lower()
    finally:
        client.close()


def read_custodial_ledger(settings: Settings) -> CustodialLedger:
    network = connect(settings)
    client = network.client
    with open_state_store(settings) as store:
        targets = {norm(t): norm(a) for t, a in store.targets("cic_eth").items()}
    data = DataDir(Path(settings.data_dir))
    opening = data.balances()
    token = network.token()
    amount = client.call(network.faucet, FAUCET.fn("tokenAmount"))
    order = list(targets)
    bal = client.call_many([(token.address, TOKEN.fn("balanceOf"), (t,)) for t in order])
    have = client.call_many([(network.accounts_index, ACCOUNTS_INDEX.fn("have"), (t,))
                             for t in order])
    used = client.call_many([(network.faucet, FAUCET.fn("nextTime"), (t,)) for t in order])
    assert client.signer is not None
    signer_tokens, faucet_tokens, engine_tokens = client.call_many([
        (token.address, TOKEN.fn("balanceOf"), (client.signer.address,)),
        (token.address, TOKEN.fn("balanceOf"), (network.faucet,)),
        (token.address, TOKEN.fn("balanceOf"), (engine_signer(settings),))])
    return CustodialLedger(
        targets=targets,
        expected={t: opening[targets[t][2:]] + amount for t in order},
        balances=dict(zip(order, bal, strict=True)),
        native=dict(zip(order, client.native_balances(order), strict=True)),
        registered=dict(zip(order, have, strict=True)),
        faucet_used={t: n != 0 for t, n in zip(order, used, strict=True)},
        index_entries=client.call(network.accounts_index, ACCOUNTS_INDEX.fn("entryCount")),
        signer_tokens=signer_tokens, faucet_tokens=faucet_tokens, faucet_amount=amount,
        engine_tokens=engine_tokens)


def assert_each_paid_once(settings: Settings, users: int, before: CustodialLedger) -> None:
    """Every user has exactly one account, registered once and paid exactly once."""
    ledger = read_custodial_ledger(settings)
    assert len(ledger.targets) == users, f"{len(ledger.targets)} targets for {users} users"
    assert len(set(ledger.targets.values())) == users
    assert ledger.index_entries - before.index_entries == users, "AccountsIndex entries"
    assert all(ledger.registered.values())
    assert ledger.wrong_balances() == {}, "balance != opening + faucet (have, want)"
    assert all(ledger.faucet_used.values())
    assert {t: n for t, n in ledger.native.items() if n != settings.gas_gift} == {}
    opening = sum(DataDir(Path(settings.data_dir)).balances().values())
    assert before.signer_tokens - ledger.signer_tokens == opening, "signer paid twice?"
    assert ledger.engine_tokens == before.engine_tokens, "a float not passed on exactly once"
    assert before.faucet_tokens - ledger.faucet_tokens == users * ledger.faucet_amount


def assert_engine_signed_the_balances(settings: Settings, schema: str) -> None:
    """Every opening balance is a transfer in the engine's queue, signed by the engine's
    signer, whose Transfer event comes from it: one per user, no other."""
    signer = engine_signer(settings)
    with open_state_store(settings) as store:
        paid = {p.address: p.tx_hash for p in store.payments("cic_eth", kind=FUND)}
        targets = store.targets("cic_eth")
    owed = {norm(t) for t, a in targets.items()
            if DataDir(Path(settings.data_dir)).balances().get(a[2:], 0) > 0}
    assert set(paid) == owed
    rows = sql_in(schema, "SELECT subject, tx_hash, signer, status FROM txs "
                          "WHERE kind = 'transfer'")
    assert sorted(r[0] for r in rows) == sorted(owed), "one engine transfer per user"
    assert {(r[0], r[1]) for r in rows} == set(paid.items()), "the ledger names them"
    assert {(r[2], r[3]) for r in rows} == {(signer, "mined")}
    receipts = connect(settings).client.receipts([h for h in paid.values() if h], logs=True)
    senders = {"0x" + log["topics"][1][-40:] for rc in receipts.values() for log in rc.logs
               if log["topics"][0] == TRANSFER_TOPIC}
    assert len(receipts) == len(paid) and senders == {signer}


def archived(data_dir: str | Path, tx_hash: str) -> bytes | None:
    """The raw transaction ``tx/`` holds under ``tx_hash`` (its 0x-hex text decoded), None if
    it has none; AssertionError if the bytes do not hash to the name."""
    store = DataDir(Path(data_dir)).tx
    if not store.has(tx_hash):
        return None
    text = store.get(tx_hash).decode()
    assert text.startswith("0x"), text[:20]
    raw = bytes.fromhex(text[2:])
    assert "0x" + keccak(raw).hex() == tx_hash.lower(), f"tx/ {tx_hash} holds another tx"
    return raw


def assert_engine_txs_archived(settings: Settings, schema: str,
                               accounts: Collection[str] | None = None) -> Counter[str]:
    """Every transaction the engine mined (registrations, gas gifts, faucet payouts, opening
    balances) -- for ``accounts`` only, if given -- is in the data directory's ``tx/``, its
    bytes hashing to its name; returns how many of each kind."""
    rows = sql_in(schema, "SELECT kind, subject, tx_hash FROM txs WHERE status = 'mined'")
    if accounts is not None:
        rows = [r for r in rows if r[1] in {norm(a) for a in accounts}]
    missing = [r for r in rows if archived(settings.data_dir, r[2]) is None]
    assert missing == [], f"{len(missing)} of {len(rows)} not in tx/, e.g. {missing[:3]}"
    return Counter(r[0] for r in rows)


def assert_users_txs_archived(settings: Settings, importer: str) -> dict[str, int]:
    """Every registration of the importer's users (its AddressAdded log names the
    transaction) and every payment of its ledger is in the data directory's ``tx/``, its bytes
    hashing to its name; returns how many of each (``register``, ``fund`` ...)."""
    network = connect(settings, signer=False)
    client = network.client
    with open_state_store(settings) as store:
        targets = {norm(t) for t in store.targets(importer)}
        paid = store.payments(importer, [Status.CONFIRMED])
    logs = client.logs(network.accounts_index, ADDRESS_ADDED, 0, client.head())
    registered = {"0x" + str(e["data"])[-40:].lower(): str(e["transactionHash"]) for e in logs}
    assert targets <= set(registered), "a user without its AddressAdded log"
    wanted = [("register", t, registered[t]) for t in sorted(targets)]
    wanted += [(p.kind, p.address, str(p.tx_hash)) for p in paid if p.tx_hash]
    missing = [w for w in wanted if archived(settings.data_dir, w[2]) is None]
    assert missing == [], f"{len(missing)} of {len(wanted)} not in tx/, e.g. {missing[:3]}"
    counts: dict[str, int] = {}
    for kind, _, _ in wanted:
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def wait_for(condition: Callable[[], Any], *, timeout: float, what: str) -> Any:
    """Poll ``condition`` until it is truthy; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f}s")
        time.sleep(0.002)  # polling an observable condition, bounded by the deadline


@dataclass
class RedisServer:
    """A redis-server of a test's own (no persistence), on a free port; stopped by pid."""

    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def start_new(cls, directory: Path) -> RedisServer:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = cls(port, directory / f"redis-{port}.log")
        server.start()
        return server

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--daemonize", "no"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        try:
            wait_for(lambda: _pings(client), timeout=10, what=f"redis on port {self.port}")
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> None:
        """Kill it and start it again on the same port: every queue and result is gone."""
        self.stop()
        self.start()


def _pings(client: Any) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
