"""The custodial engine embedded in this process: SQLite storage, a Celery worker in a thread.

The whole custodial pipeline with neither PostgreSQL nor Redis (any connection to either fails
the test), ``cic-seed demo --custodial``, a client with no engine in its process, and the
storage's guarantees on SQLite beside PostgreSQL: nonces handed out once each under
concurrent threads, a transaction opened inside another joining it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cic_devnet.custodial.devnet import SQLITE_FILE, EngineOptions, prepare_engine
from cic_devnet.custodial.storage import Storage
from cic_devnet.custodial.stores import open_storage
from cic_devnet.custodial.txqueue import TxQueue
from cic_seeding.config import load_settings
from cic_seeding.custodial import TASK_STATUS, engine_client, unconfigured
from cic_seeding.custodial.local import EMBEDDED_BROKER, LocalClient
from cic_seeding.errors import CustodialError, CustodialUnavailableError, UsageError
from cic_seeding.sync.run import run_sync
from cic_seeding.sync.syncer import SyncOptions
from cic_seeding.verify import VerifyOptions, run_verify
from tests.conftest import devnet_settings, start_devnet
from tests.custodial.world import (
    assert_each_paid_once,
    make_data,
    read_custodial_ledger,
    run_import,
)
from tests.helpers import run_cli
from tests.pg import PG_URL


def test_30_custodial_users_without_postgresql_or_redis(
        tmp_path: Path, no_postgresql_no_redis: list[str]) -> None:
    for devnet in start_devnet(tmp_path / "devnet", custodial=True,
                               custodial_options=EngineOptions(embedded=True)):
        engine = devnet.info["custodial"]
        db = devnet.directory / SQLITE_FILE
        assert engine["embedded"] and engine["workers"] == []
        assert engine["broker_url"] == EMBEDDED_BROKER and engine["db_url"] == f"sqlite:///{db}"
        assert db.stat().st_mode & 0o777 == 0o600  # sealed keys: the owner's only

        settings = devnet_settings(devnet, make_data(tmp_path, 30, seed=616))
        before = read_custodial_ledger(settings)
        result = run_import(settings)  # found through devnet.json, as for workers
        assert result.ok and result.confirmed == 30, result.render_text()
        sync = run_sync(settings, "cic_eth", SyncOptions(timeout=120, poll=0.1))
        assert sync.ok and sync.done == 30, sync.render_text()
        assert_each_paid_once(settings, 30, before)

        verify = run_verify(settings, VerifyOptions(importer="cic_eth"))
        assert verify.ok, verify.render_text()
        for check in ("accounts_index", "balance", "faucet", "gas", "custodial_key"):
            assert verify.checks[check].ok == 30, verify.checks[check].line()

        assert devnet.engine is not None
        keys = devnet.engine.ref.get().keys
        _assert_stored(db, settings.data_dir, keys)
    assert no_postgresql_no_redis == []


def _assert_stored(db: Path, data_dir: str, keys: Any) -> None:
    """One account per user, sealed; every transaction mined, the signer's nonces 0..n-1."""
    from cic_seeding.state import open_state_store

    conn = sqlite3.connect(db)
    try:
        accounts = dict(conn.execute("SELECT address, sealed_key FROM accounts").fetchall())
        txs = conn.execute("SELECT signer, nonce, status FROM txs ORDER BY nonce").fetchall()
    finally:
        conn.close()
    settings = load_settings({"data_dir": data_dir}, config_file=None, environ={})
    with open_state_store(settings) as store:
        assert {t.lower() for t in store.targets("cic_eth")} == set(accounts)
    assert {s for _, _, s in txs} == {"mined"}
    assert len({s for s, _, _ in txs}) == 1  # the engine's signer only
    assert [n for _, n, _ in txs] == list(range(len(txs)))  # no gap, no nonce twice
    stored = b"".join(p.read_bytes() for p in db.parent.glob(f"{SQLITE_FILE}*"))
    for address, sealed in accounts.items():
        key = keys.open(sealed, address.encode())
        assert key not in stored and key.hex().encode() not in stored


def test_demo_custodial_seeds_and_verifies_custodial_users_too(tmp_path: Path) -> None:
    result = run_cli("demo", "--users", "5", "--no-meta", "--custodial", "--custodial-users",
                     "12", "--dir", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "engine embedded in this process" in out, out
    custodial = out[out.index("custodial users in"):]
    for line in ("cic_eth: 12 users imported", "sync cic_eth: done: 12/12",
                 "custodial_key: 12/12", "balance: 12/12", "faucet: 12/12", "gas: 12/12"):
        assert line in custodial, out
    assert (tmp_path / "demo" / "report-custodial.html").is_file()
    assert (tmp_path / "demo" / "devnet" / SQLITE_FILE).is_file()


def test_an_engine_embedded_in_another_process_is_named_not_waited_for() -> None:
    settings = load_settings({"custodial_broker_url": EMBEDDED_BROKER,
                              "custodial_queue": "cic_custodial_elsewhere"},
                             config_file=None, environ={})
    reason = unconfigured(settings)  # the verifier skips custodial_key with this reason
    assert reason is not None and "embedded in another process" in reason
    client = engine_client(settings)
    assert isinstance(client, LocalClient)
    try:
        with pytest.raises(CustodialUnavailableError, match=r"queue 'cic_custodial_elsewhere' "
                           r"is embedded in another process .* `cic-seed demo --custodial`"):
            client.call(TASK_STATUS, {}, timeout=5)
    finally:
        client.close()


@pytest.mark.parametrize(("flags", "embedded"), [
    ({}, True),
    ({"custodial_broker_url": "memory://"}, True),
    ({"custodial_db_url": PG_URL}, False),
    ({"custodial_broker_url": "redis://127.0.0.1:6379/0"}, False),
])
def test_the_engine_is_embedded_unless_postgresql_or_redis_is_configured(
        flags: dict[str, str], embedded: bool) -> None:
    settings = load_settings(flags, config_file=None, environ={})
    assert EngineOptions.from_settings(settings).embedded is embedded


def test_worker_processes_on_the_in_memory_broker_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"the custodial broker memory:// serves an engine "
                       r"embedded in one process; worker processes need Redis"):
        prepare_engine(tmp_path, None, "0x" + "00" * 20,  # type: ignore[arg-type]
                       EngineOptions(broker_url="memory://"))
    assert list(tmp_path.iterdir()) == []  # refused before anything was made


class _Chain:
    """What nonce allocation asks of the chain: its id, and a signer's pending count."""

    chain_id = 8996

    def __init__(self, pending: int) -> None:
        self.rpc = self
        self.pending = pending

    def call(self, method: str, params: list[Any]) -> str:
        assert method == "eth_getTransactionCount" and params[1] == "pending"
        return hex(self.pending)


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """The engine's storage on a fresh SQLite file, and on a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        store = open_storage(f"sqlite:///{tmp_path / 'engine.db'}")
        yield store
        store.close()
        return
    store = open_storage(PG_URL, request.getfixturevalue("pg_schema"))
    try:
        yield store
    finally:
        store.close()


def test_nonces_are_handed_out_once_each_under_concurrent_threads(storage: Storage) -> None:
    """8 threads x 25 allocations of 1 to 3 nonces at once, every third rolled back: the
    committed nonces are consecutive from the chain's pending count, none twice, none
    skipped."""
    queue = TxQueue(storage, _Chain(pending=7), signer_for=lambda a: None)
    signer = "0x" + "ab" * 20
    start = threading.Barrier(8)
    kept: list[int] = []
    lock = threading.Lock()

    def allocate(worker: int) -> None:
        start.wait()
        for i in range(25):
            try:
                with storage.transaction() as cur:
                    count = 1 + (worker * i) % 3
                    nonce = queue.allocate(cur, signer, count)
                    if (worker + i) % 3 == 0:
                        raise _Rollback
            except _Rollback:
                continue
            with lock:
                kept.extend(range(nonce, nonce + count))

    threads = [threading.Thread(target=allocate, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
        assert not t.is_alive()
    assert sorted(kept) == list(range(7, 7 + len(kept)))
    assert len(kept) == sum(1 + (w * i) % 3 for w in range(8) for i in range(25) if (w + i) % 3)


class _Rollback(Exception):
    """Ends a transaction the way any failure would."""


def test_a_transaction_inside_another_joins_it(storage: Storage) -> None:
    with storage.transaction() as cur:
        cur.execute("INSERT INTO engine_meta (key, value) VALUES (%s, %s)", ("outer", b"1"))
        with storage.transaction() as inner:  # e.g. a key read while the queue re-signs
            inner.execute("SELECT value FROM engine_meta WHERE key = %s", ("outer",))
            assert bytes(inner.fetchone()[0]) == b"1"  # the outer's uncommitted row
            inner.execute("INSERT INTO engine_meta (key, value) VALUES (%s, %s)",
                          ("inner", b"2"))
    with pytest.raises(_Rollback), storage.transaction() as cur:
        cur.execute("DELETE FROM engine_meta WHERE key = %s", ("outer",))
        with storage.transaction() as inner:
            inner.execute("DELETE FROM engine_meta WHERE key = %s", ("inner",))
        raise _Rollback
    with storage.transaction() as cur:
        cur.execute("SELECT key FROM engine_meta WHERE key IN (%s, %s) ORDER BY key",
                    ("inner", "outer"))
        assert cur.fetchall() == [("inner",), ("outer",)]  # both deletes rolled back


def test_a_sqlite_url_without_a_file_or_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CustodialError, match="names no file"):
        open_storage("sqlite:///")
    with pytest.raises(CustodialError, match=r"cannot open the custodial database "
                       rf"{tmp_path}/missing/engine.db: .*check that its directory exists"):
        open_storage(f"sqlite:///{tmp_path / 'missing' / 'engine.db'}")
