"""Services restarted in the middle of a run, every one a real process: the RPC node (anvil,
restarted from its state file), a private PostgreSQL holding the state store, the metadata
server. The run either waits with bounded backoff and completes, or stops with one clear
``error:`` line once its retry budget is spent; either way a rerun completes with every user
complete and nothing paid or written twice. The state store reconnects by itself: a
PostgreSQL restart must not even stop the run.

    python -m pytest -q tests/faults/test_restarts.py

(The USSD gateway restart is ``tests/ussd/test_restart.py``; Redis and the custodial workers
are ``tests/custodial/test_faults.py``.)
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from cic_devnet import anvil
from cic_devnet.anvil import start_anvil
from cic_devnet.devnet import BLOCK_GAS_LIMIT, KEEP_STATES, Devnet
from cic_devnet.meta.process import MetaServerProcess, start_meta_server
from cic_seeding.chain.connect import connect
from cic_seeding.chain.rpc import JsonRpc
from cic_seeding.config import Settings
from cic_seeding.sync.run import run_sync
from cic_seeding.sync.syncer import SyncOptions
from tests.conftest import start_devnet
from tests.e2e.ledger import Holdings, assert_paid_exactly_once, lost_and_doubled, make_data
from tests.e2e.procs import (
    Script,
    clean_env,
    payments_in,
    running,
    seed_args,
    users_in,
    wait_for,
)
from tests.faults.kills import Tally, state_count, versions
from tests.faults.report import FaultReport
from tests.helpers import gate_proxy
from tests.meta.test_importer import audit_all, imported_datadir
from tests.pg import PrivatePostgres, private_postgres

USERS = 150


def assert_waited_or_stopped_clearly(run: Script, code: int, *names: str) -> None:
    """Exit 0 (it rode the restart out), or exit 1 with exactly one ``error:`` line naming
    the service (its retry budget was spent) and no traceback."""
    assert "Traceback" not in run.stderr, run.report()
    if code == 0:
        return
    errors = [x for x in run.stderr.splitlines() if x.startswith("error: ")]
    assert code == 1 and len(errors) == 1, run.report()
    assert any(n in errors[0] for n in names), run.report()


def finish(script: str, args: list[str], *, cwd: Path, env: dict[str, str], first: int,
           tally: Tally) -> None:
    """A rerun after a first run that ended with ``first``; it must complete."""
    tally.faults, tally.runs = 1, 1
    if first != 0:
        with running(script, *args, cwd=cwd, env=env) as rerun:
            tally.runs += 1
            assert rerun.wait(180) == 0, rerun.report()


def pay_and_check(settings: Settings, tally: Tally, before: Holdings | None = None) -> None:
    result = run_sync(settings, "eth", SyncOptions(timeout=120, poll=0.05))
    assert result.ok and result.done == tally.users, result.render_text()
    tally.users_lost, tally.double_payments = lost_and_doubled(settings)
    assert_paid_exactly_once(settings, before)


# --- anvil, stopped and restarted from its state file ----------------------------------------


@pytest.fixture
def stateful(tmp_path: Path) -> Iterator[Devnet]:
    """A devnet whose anvil dumps its state every second and on SIGTERM."""
    directory = tmp_path / "devnet"
    yield from start_devnet(directory, state=directory / "chain.json")


@contextlib.contextmanager
def paused(run: Script) -> Iterator[None]:
    """SIGSTOP the run's process group for the block, SIGCONT after."""
    os.killpg(run.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(run.proc.pid, signal.SIGCONT)


def stop_anvil(devnet: Devnet, run: Script) -> None:
    """SIGTERM: anvil writes its state file on the way out.

    anvil 1.7.1 writes a torn file when a block is mined while it dumps: the accounts carry
    the block's effects, the history lacks the block (2 to 4 of 15 restarts during a send-and-mine
    loop; the signer's nonce is ahead of the transactions the node knows). A payment in that block
    is then unknown by hash with its nonce used, and the syncer pays it again. So the run is
    paused and the node flushed (one ``evm_mine``, which waits for any mining in flight)
    before the stop: the dump then has nothing to race. The run sees the node go away all
    the same: its open connections are cut.
    """
    assert devnet.anvil is not None
    with paused(run):
        anvil.mine(devnet.rpc_url)
        report = devnet.anvil.stop()
    assert report.was_running and not report.forced, report.detail


def start_anvil_again(devnet: Devnet) -> None:
    """The same port and state file: the chain continues where the dump left it."""
    old = devnet.anvil
    assert old is not None and old.state_path is not None and old.state_path.is_file()
    devnet.anvil = start_anvil(port=old.port, chain_id=old.chain_id, state=old.state_path,
                               log_file=old.log_path, block_gas_limit=BLOCK_GAS_LIMIT,
                               keep_states=KEEP_STATES)
    assert_history_matches_state(devnet)


def assert_history_matches_state(devnet: Devnet) -> None:
    """Every transaction on this chain is the deployer's: its nonce counts them. A torn state
    file (see :func:`stop_anvil`) shows as a nonce ahead of the transactions in the blocks."""
    rpc = JsonRpc(devnet.rpc_url)
    head = int(rpc.call("eth_blockNumber"), 16)
    blocks = rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in range(head + 1)])
    known = sum(len(b["transactions"]) for b in blocks)
    nonce = int(rpc.call("eth_getTransactionCount", [devnet.info["deployer"]["address"],
                                                     hex(head)]), 16)  # the run mines on
    assert nonce == known, (f"anvil's state file is torn: the deployer's nonce is {nonce}, the "
                            f"blocks hold {known} transactions")


def test_anvil_restarted_mid_import_the_import_waits_or_stops_and_a_rerun_completes(
        stateful: Devnet, tmp_path: Path, fault_report: FaultReport) -> None:
    devnet = stateful
    settings = make_data(devnet, tmp_path, USERS, seed=61)
    data = Path(settings.data_dir)
    tally = fault_report.tally("eth", "anvil restart (state file)")
    tally.users = USERS
    args = seed_args(data, devnet, "--batch-size", "10")
    with running("eth/seed.py", *args, cwd=tmp_path) as seed:
        wait_for(lambda: users_in(data, "confirmed") >= 40, timeout=60,
                 what="40 users confirmed", while_alive=seed)
        stop_anvil(devnet, seed)
        start_anvil_again(devnet)
        code = seed.wait(180)
    assert_waited_or_stopped_clearly(seed, code, devnet.rpc_url)
    finish("eth/seed.py", args, cwd=tmp_path, env=clean_env(), first=code, tally=tally)
    assert users_in(data, "confirmed") == USERS
    pay_and_check(settings, tally)


def test_anvil_down_past_the_retry_budget_stops_the_import_with_one_line(
        stateful: Devnet, tmp_path: Path, fault_report: FaultReport) -> None:
    devnet = stateful
    settings = make_data(devnet, tmp_path, USERS, seed=62)
    data = Path(settings.data_dir)
    tally = fault_report.tally("eth", "anvil down past the retry budget")
    tally.users = USERS
    args = seed_args(data, devnet, "--batch-size", "10")
    env = clean_env(CIC_RPC_RETRIES="3")
    with running("eth/seed.py", *args, cwd=tmp_path, env=env) as seed:
        wait_for(lambda: users_in(data, "confirmed") >= 40, timeout=60,
                 what="40 users confirmed", while_alive=seed)
        stop_anvil(devnet, seed)
        code = seed.wait(120)  # the node stays down until the import has given up
    assert code == 1, seed.report()
    assert_waited_or_stopped_clearly(seed, code, devnet.rpc_url)
    assert "gave up after 4 attempts" in seed.stderr, seed.report()
    start_anvil_again(devnet)
    finish("eth/seed.py", args, cwd=tmp_path, env=env, first=code, tally=tally)
    assert users_in(data, "confirmed") == USERS
    pay_and_check(settings, tally)


def test_anvil_restarted_mid_sync_pays_each_user_once(
        stateful: Devnet, tmp_path: Path, fault_report: FaultReport) -> None:
    devnet = stateful
    settings = make_data(devnet, tmp_path, USERS, seed=63)
    data = Path(settings.data_dir)
    tally = fault_report.tally("sync (eth)", "anvil restart (state file)")
    tally.users = USERS
    with running("eth/seed.py", *seed_args(data, devnet, "--batch-size", "25"),
                 cwd=tmp_path) as seed:
        assert seed.wait(120) == 0, seed.report()
    before = Holdings.read(connect(settings))
    args = seed_args(data, devnet, "--timeout", "120", "--poll", "0.05")
    env = clean_env(CIC_BATCH_SIZE="10")
    with running("eth/sync.py", *args, cwd=tmp_path, env=env) as sync:
        wait_for(lambda: payments_in(data, "submitted", "confirmed") >= 150, timeout=60,
                 what="150 payments recorded", while_alive=sync)
        stop_anvil(devnet, sync)
        start_anvil_again(devnet)
        code = sync.wait(180)
    assert_waited_or_stopped_clearly(sync, code, devnet.rpc_url)
    finish("eth/sync.py", args, cwd=tmp_path, env=env, first=code, tally=tally)
    tally.users_lost, tally.double_payments = lost_and_doubled(settings)
    assert_paid_exactly_once(settings, before)


# --- a private PostgreSQL for the state store, restarted mid-run ------------------------------


@pytest.fixture(scope="module")
def postgres() -> Iterator[PrivatePostgres]:
    with private_postgres() as pg:
        yield pg


def assert_rode_out_the_restart(run: Script, code: int) -> None:
    """The state store reconnected (a warning said the connection was lost) and the run
    completed: no rerun needed."""
    assert code == 0, run.report()
    assert "lost the connection to the state store" in run.stderr, run.report()
    assert "Traceback" not in run.stderr, run.report()


def pg_users(pg: PrivatePostgres, db: str, *statuses: str) -> int:
    marks = ", ".join(f"'{s}'" for s in statuses)
    return pg.count(db, f"SELECT count(*) FROM users WHERE importer = 'eth' AND status IN "
                        f"({marks})")


def pg_payments(pg: PrivatePostgres, db: str, *statuses: str) -> int:
    marks = ", ".join(f"'{s}'" for s in statuses)
    return pg.count(db, f"SELECT count(*) FROM payments WHERE status IN ({marks})")


def test_postgres_restarted_mid_import_the_import_reconnects_and_completes(
        postgres: PrivatePostgres, devnet: Devnet, tmp_path: Path,
        fault_report: FaultReport) -> None:
    db = "import_restart"
    url = postgres.create_database(db)
    settings = make_data(devnet, tmp_path, USERS, seed=64, state_url=url)
    data = Path(settings.data_dir)
    tally = fault_report.tally("eth", "PostgreSQL restart (state store)")
    tally.users = USERS
    args = seed_args(data, devnet, "--batch-size", "10", "--state-url", url)
    with running("eth/seed.py", *args, cwd=tmp_path) as seed:
        wait_for(lambda: pg_users(postgres, db, "confirmed") >= 40, timeout=60,
                 what="40 users confirmed in PostgreSQL", while_alive=seed)
        postgres.restart()
        code = seed.wait(180)
    assert_rode_out_the_restart(seed, code)
    finish("eth/seed.py", args, cwd=tmp_path, env=clean_env(), first=code, tally=tally)
    assert pg_users(postgres, db, "confirmed") == USERS
    assert not (data / "state.db").exists()  # the store really was PostgreSQL
    pay_and_check(settings, tally)


def test_postgres_restarted_mid_sync_pays_each_user_once(
        postgres: PrivatePostgres, devnet: Devnet, tmp_path: Path,
        fault_report: FaultReport) -> None:
    db = "sync_restart"
    url = postgres.create_database(db)
    settings = make_data(devnet, tmp_path, USERS, seed=65, state_url=url)
    data = Path(settings.data_dir)
    tally = fault_report.tally("sync (eth)", "PostgreSQL restart (state store)")
    tally.users = USERS
    with running("eth/seed.py", *seed_args(data, devnet, "--batch-size", "25", "--state-url",
                                           url), cwd=tmp_path) as seed:
        assert seed.wait(120) == 0, seed.report()
    before = Holdings.read(connect(settings))
    args = seed_args(data, devnet, "--timeout", "120", "--poll", "0.05", "--state-url", url)
    env = clean_env(CIC_BATCH_SIZE="10")
    with running("eth/sync.py", *args, cwd=tmp_path, env=env) as sync:
        wait_for(lambda: pg_payments(postgres, db, "submitted", "confirmed") >= 150,
                 timeout=60, what="150 payments recorded in PostgreSQL", while_alive=sync)
        postgres.restart()
        code = sync.wait(180)
    assert_rode_out_the_restart(sync, code)
    finish("eth/sync.py", args, cwd=tmp_path, env=env, first=code, tally=tally)
    tally.users_lost, tally.double_payments = lost_and_doubled(settings)
    assert_paid_exactly_once(settings, before)


# --- the metadata server, restarted mid cic_meta import ---------------------------------------


@pytest.fixture
def meta_server(tmp_path: Path) -> Iterator[list[MetaServerProcess]]:
    """The server in a list, so a test can put the restarted one in its place."""
    servers = [start_meta_server(db=str(tmp_path / "meta.db"))]
    try:
        yield servers
    finally:
        servers[-1].stop()


def meta_env(server: MetaServerProcess) -> dict[str, str]:
    return clean_env(CIC_META_URL=server.url, CIC_META_TOKEN=server.token, CIC_BATCH_SIZE="5",
                     CIC_META_CONCURRENCY="4")


def check_documents(server: MetaServerProcess, data_root: Path, users: int,
                    tally: Tally) -> None:
    from cic_seeding.datadir import DataDir

    docs = versions(server)
    report = audit_all(DataDir(data_root), server)
    tally.users_lost = users - min(a.checked - a.failed for a in report.values())
    tally.double_payments = sum(1 for v in docs.values() if v != 1)
    assert state_count(data_root, "cic_meta", "confirmed") == users
    assert len(docs) == 4 * users and set(docs.values()) == {1}  # nothing written twice
    assert all(a.failed == 0 and a.checked == users for a in report.values()), report


def test_meta_server_restarted_mid_import_the_import_waits_or_stops_and_a_rerun_completes(
        meta_server: list[MetaServerProcess], tmp_path: Path, fault_report: FaultReport) -> None:
    users = 150
    data = imported_datadir(tmp_path / "data", count=users)
    tally = fault_report.tally("cic_meta", "metadata server restart")
    tally.users = users
    server = meta_server[0]
    env, args = meta_env(server), ["--dir", str(data.root)]
    with running("cic_meta/seed.py", *args, cwd=tmp_path, env=env) as run:
        wait_for(lambda: len(versions(server)) >= 80, timeout=60,
                 what="80 documents on the server", while_alive=run)
        meta_server.append(server.restart())
        code = run.wait(120)
    assert_waited_or_stopped_clearly(run, code, server.url)
    finish("cic_meta/seed.py", args, cwd=tmp_path, env=env, first=code, tally=tally)
    check_documents(meta_server[-1], data.root, users, tally)


def test_meta_server_down_past_the_retry_budget_stops_the_import_with_one_line(
        meta_server: list[MetaServerProcess], tmp_path: Path, fault_report: FaultReport) -> None:
    """The import talks to the server through a gate that holds its sixth write: the server is
    stopped while the import waits there (150 users take a tenth of a second, so stopping it
    when some documents had arrived raced the import's end), then the gate opens."""
    users = 150
    data = imported_datadir(tmp_path / "data", count=users)
    tally = fault_report.tally("cic_meta", "metadata server down past the retry budget")
    tally.users = users
    server = meta_server[0]
    env, args = meta_env(server), ["--dir", str(data.root)]
    with gate_proxy(server.url, let_through=5) as (gate, url):
        held = dict(env, CIC_META_URL=url, CIC_META_RETRIES="2")
        with running("cic_meta/seed.py", *args, cwd=tmp_path, env=held) as run:
            wait_for(gate.holding.is_set, timeout=60, what="the import's sixth write",
                     while_alive=run)
            assert 0 < len(versions(server)) < 3 * users
            server.stop()
            gate.open()
            code = run.wait(120)  # the server stays down until the import has given up
    assert code == 1, run.report()
    assert_waited_or_stopped_clearly(run, code, url)
    meta_server.append(start_meta_server(port=server.port, db=server.db, token=server.token))
    finish("cic_meta/seed.py", args, cwd=tmp_path, env=env, first=code, tally=tally)
    check_documents(meta_server[-1], data.root, users, tally)
