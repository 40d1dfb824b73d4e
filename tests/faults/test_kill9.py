"""kill -9 sweeps: the eth importer, the syncer, cic_meta and cic_ussd, each killed with SIGKILL
at seeded points and rerun after every kill; then every user is complete, balances are exact
and nothing exists twice (registrations, payments, documents, accounts).

Each importer runs as a user runs it (``eth/seed.py``, ``eth/sync.py``, ``cic_meta/seed.py``,
``cic_ussd/seed.py``, subprocesses in their own process group) against real services: anvil,
the metadata server, the USSD gateway with its custodial engine (Celery workers, PostgreSQL,
Redis). A kill point is a seeded threshold on what the run makes observable (state store rows,
files, documents, accounts); see :mod:`tests.faults.kills`. (cic_eth and its syncer are
killed in ``tests/faults/test_kill9_custodial.py``.)

CI runs a short seeded sample, 3 kill points per importer (about 40 s on 2 cores)::

    python -m pytest -q tests/faults/test_kill9.py

The full sweep, 20 points per importer (80 kills, about 2.5 minutes), with the published counts
written to JSON (add ``tests/faults/test_restarts.py`` for the restart rows)::

    CIC_FAULT_POINTS=20 CIC_FAULT_REPORT=faults.json python -m pytest -q tests/faults/test_kill9.py

``CIC_TEST_FAULT_SEED=N`` (default 4) picks other kill points; a failure names the point.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from cic_devnet.devnet import Devnet
from cic_devnet.meta.process import MetaServerProcess, start_meta_server
from cic_seeding.chain.connect import connect
from cic_seeding.chain.registry import ACCOUNTS_INDEX, FAUCET, TOKEN
from cic_seeding.datadir import DataDir
from cic_seeding.state import Status, open_state_store
from cic_seeding.sync.run import run_sync
from cic_seeding.sync.syncer import SyncOptions
from tests.custodial.world import make_data as make_plain_data
from tests.e2e.ledger import (
    Holdings,
    assert_paid_exactly_once,
    lost_and_doubled,
    make_data,
    planned_payments,
)
from tests.e2e.procs import clean_env, files_in, payments_in, seed_args, users_in
from tests.faults.kills import (
    FAULT_POINTS,
    FAULT_SEED,
    KillPoint,
    Probe,
    Tally,
    kill_at,
    plan,
    run_to_end,
    state_count,
    versions,
)
from tests.faults.report import FaultReport
from tests.meta.test_importer import audit_all, imported_datadir
from tests.ussd.world import Stack

BATCH = "10"


# --- eth importer -------------------------------------------------------------------------------


def test_eth_import_killed_at_seeded_points(devnet: Devnet, tmp_path: Path,
                                            fault_report: FaultReport) -> None:
    users = max(150, 10 * FAULT_POINTS)
    settings = make_data(devnet, tmp_path, users, seed=41)
    data = Path(settings.data_dir)
    tally = fault_report.tally("eth")
    tally.users = users
    # right after transactions were broadcast (tx/ written, perhaps not recorded), once
    # keyfiles were written, once registrations were recorded as submitted, confirmed, and
    # once their records were written under new/
    probes = [Probe("tx/ files", lambda: files_in(data / "tx")),
              Probe("keyfiles", lambda: files_in(data / "keystore")),
              Probe("users submitted", lambda: users_in(data, "submitted", "confirmed")),
              Probe("users confirmed", lambda: users_in(data, "confirmed")),
              Probe("new/ records", lambda: files_in(data / "new"))]
    points = plan(random.Random(FAULT_SEED), probes, 10, users - 20)
    args = seed_args(data, devnet, "--batch-size", BATCH)
    kill_at("eth/seed.py", args, points, cwd=tmp_path, env=clean_env(), tally=tally)
    assert users_in(data, "confirmed") < users, "the sweep left nothing for the last rerun"
    run_to_end("eth/seed.py", args, cwd=tmp_path, env=clean_env(), tally=tally)
    assert users_in(data, "confirmed") == users

    network = connect(settings)
    assert network.client.call(network.accounts_index, ACCOUNTS_INDEX.fn("entryCount")) == users
    before = Holdings.read(network)
    result = run_sync(settings, "eth", SyncOptions(timeout=120, poll=0.05))
    assert result.ok and result.done == users, result.render_text()
    tally.users_lost, tally.double_payments = lost_and_doubled(settings)
    assert_paid_exactly_once(settings, before)


# --- the syncer -------------------------------------------------------------------------------


def test_sync_killed_at_seeded_points(devnet: Devnet, tmp_path: Path,
                                      fault_report: FaultReport) -> None:
    users = max(150, 10 * FAULT_POINTS)
    settings = make_data(devnet, tmp_path, users, seed=42)
    data = Path(settings.data_dir)
    tally = fault_report.tally("sync (eth)")
    tally.users = users
    before = Holdings.read(connect(settings))
    env = clean_env(CIC_BATCH_SIZE=BATCH)
    seed = seed_args(data, devnet, "--batch-size", BATCH)
    args = seed_args(data, devnet, "--timeout", "120", "--poll", "0.05")
    rng = random.Random(FAULT_SEED + 1)

    # half the users registered: the syncer pays them, confirms, then waits for the rest and
    # is killed there (payments recorded as confirmed), or earlier, mid-round
    half = users // 2
    seeding = Tally("eth")  # the seed runs are not the syncer's
    run_to_end("eth/seed.py", [*seed, "--limit", str(half)], cwd=tmp_path, env=env,
               tally=seeding)
    paid = planned_payments(data, half)
    sent = Probe("payments submitted", lambda: payments_in(data, "submitted", "confirmed"))
    first = plan(rng, [sent], 1, paid, max(1, FAULT_POINTS // 3))
    kill_at("eth/sync.py", args, first, cwd=tmp_path, env=env, tally=tally)
    confirmed = Probe("payments confirmed", lambda: payments_in(data, "confirmed"))
    kill_at("eth/sync.py", args, [KillPoint(confirmed, paid)], cwd=tmp_path, env=env,
            tally=tally)
    run_to_end("eth/seed.py", seed, cwd=tmp_path, env=env, tally=seeding)

    # one round plans the other half's payments, sends them (10 per batch: signed, recorded
    # as submitted, broadcast, mined) and then confirms them: each kill lands in that round
    planned = planned_payments(data, users)
    rest = FAULT_POINTS - len(first) - 1
    if rest > 0:
        kill_at("eth/sync.py", args, plan(rng, [sent], paid + 5, planned - 20, rest),
                cwd=tmp_path, env=env, tally=tally)
    assert payments_in(data, "confirmed") < planned
    run_to_end("eth/sync.py", args, cwd=tmp_path, env=env, tally=tally)
    assert payments_in(data, "confirmed") == planned
    tally.users_lost, tally.double_payments = lost_and_doubled(settings)
    assert_paid_exactly_once(settings, before)


# --- cic_meta -----------------------------------------------------------------------------------


@pytest.fixture
def meta_server(tmp_path: Path) -> Iterator[MetaServerProcess]:
    server = start_meta_server(db=str(tmp_path / "meta.db"))
    try:
        yield server
    finally:
        server.stop()


def test_meta_import_killed_at_seeded_points(meta_server: MetaServerProcess, tmp_path: Path,
                                             fault_report: FaultReport) -> None:
    users = max(60, 5 * FAULT_POINTS)
    data = imported_datadir(tmp_path / "data", count=users)
    tally = fault_report.tally("cic_meta")
    tally.users = users
    env = clean_env(CIC_META_URL=meta_server.url, CIC_META_TOKEN=meta_server.token,
                    CIC_BATCH_SIZE="5", CIC_META_CONCURRENCY="4")
    args = ["--dir", str(data.root)]
    probes = [Probe("users' documents on the server", lambda: len(versions(meta_server)) // 4),
              Probe("users confirmed", lambda: state_count(data.root, "cic_meta", "confirmed")),
              Probe("users submitted",
                    lambda: state_count(data.root, "cic_meta", "submitted", "confirmed"))]
    points = plan(random.Random(FAULT_SEED + 2), probes, 3, users - 10)
    kill_at("cic_meta/seed.py", args, points, cwd=tmp_path, env=env, tally=tally)
    run_to_end("cic_meta/seed.py", args, cwd=tmp_path, env=env, tally=tally)

    with open_state_store(url=str(data.root / "state.db")) as store:
        confirmed = store.counts("cic_meta").get(Status.CONFIRMED, 0)
    docs = versions(meta_server)
    report = audit_all(data, meta_server)
    tally.users_lost = users - min(a.checked - a.failed for a in report.values())
    tally.double_payments = sum(1 for v in docs.values() if v != 1)  # a document rewritten
    assert confirmed == users
    assert len(docs) == 4 * users and set(docs.values()) == {1}
    assert all(a.failed == 0 and a.checked == users for a in report.values()), report


# --- cic_ussd -----------------------------------------------------------------------------------


@pytest.fixture
def stack(devnet: Devnet, tmp_path: Path) -> Iterator[Stack]:
    (tmp_path / "stack").mkdir()
    with Stack.running(devnet, tmp_path / "stack") as s:
        yield s


def test_ussd_import_killed_at_seeded_points(stack: Stack, tmp_path: Path,
                                             fault_report: FaultReport) -> None:
    users = max(40, 3 * FAULT_POINTS)
    data = make_plain_data(tmp_path, users, seed=910)
    tally = fault_report.tally("cic_ussd")
    tally.users = users
    settings = stack.settings(data)
    env = clean_env(CIC_CUSTODIAL_BROKER_URL=stack.harness.broker_url,
                    CIC_CUSTODIAL_QUEUE=stack.harness.setup.queue,
                    CIC_META_URL=stack.meta.url, CIC_META_TOKEN=stack.meta.token,
                    CIC_USSD_URL=stack.gateway.url,
                    CIC_USSD_SERVICE_CODE=stack.gateway.service_code,
                    CIC_BATCH_SIZE="5", CIC_USSD_CONCURRENCY="4", CIC_USSD_MAX_WAIT="60")
    args = seed_args(data, stack.devnet)
    probes = [Probe("gateway accounts",
                    lambda: stack.sql("SELECT count(*) FROM ussd_accounts")[0][0]),
              Probe("users submitted",
                    lambda: state_count(data, "cic_ussd", "submitted", "confirmed")),
              Probe("users confirmed", lambda: state_count(data, "cic_ussd", "confirmed"))]
    points = plan(random.Random(FAULT_SEED + 3), probes, 3, users - 8)
    kill_at("cic_ussd/seed.py", args, points, cwd=tmp_path, env=env, tally=tally)
    run_to_end("cic_ussd/seed.py", args, cwd=tmp_path, env=env, tally=tally)

    with open_state_store(settings) as store:
        targets = store.targets("cic_ussd")
    sync = run_sync(settings, "cic_ussd", SyncOptions(timeout=120, poll=0.1))
    assert sync.ok and sync.done == users, sync.render_text()

    phones = [u.phone for u in DataDir(data).users()]
    (rows, distinct), = stack.sql("SELECT count(*), count(DISTINCT phone) FROM ussd_accounts "
                                  "WHERE phone = ANY(%s)", (phones,))
    engine = stack.harness.count("SELECT count(*) FROM accounts WHERE request_id LIKE 'ussd:%%'")
    network = connect(settings, signer=False)
    amount = network.client.call(network.faucet, FAUCET.fn("tokenAmount"))
    opening = DataDir(data).balances()
    order = list(targets)
    have = network.client.call_many([(network.token().address, TOKEN.fn("balanceOf"), (t,))
                                     for t in order])
    want = [opening[targets[t][2:]] + amount for t in order]
    tally.users_lost = users - len(targets) + sum(1 for h, w in zip(have, want, strict=True)
                                                  if h < w)
    tally.double_payments = (rows - distinct) + max(0, engine - users) + sum(
        1 for h, w in zip(have, want, strict=True) if h > w)
    assert len(targets) == users and len(set(targets.values())) == users
    assert (rows, distinct, engine) == (users, users, users)
    assert have == want  # every user paid exactly once
