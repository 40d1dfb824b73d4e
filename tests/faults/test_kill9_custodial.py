"""kill -9 sweeps of the custodial importer: ``cic_eth/seed.py`` and ``cic_eth/sync.py``, each
killed with SIGKILL at seeded points and rerun after every kill; then every user has one engine
account (one per request id), registered once in the AccountsIndex, holding exactly its
opening balance plus the faucet payout, and every check of the verifier passes.

The scripts run as a user runs them, against a custodial engine of the test's own (a Celery
worker, a PostgreSQL schema, a Redis queue: :class:`tests.custodial.world.Harness`). Kill
points are seeded thresholds on what a run makes observable -- the state store, ``new/``
records, the engine's ``accounts`` and ``txs`` tables; see :mod:`tests.faults.kills`. The
counts go to the same fault report as the other importers' (rows "cic_eth" and
"sync (cic_eth)").

CI runs a short seeded sample, 3 kill points each (about 25 s on 2 cores)::

    python -m pytest -q tests/faults/test_kill9_custodial.py

The full sweep, 20 points each (40 kills, about 30 s)::

    CIC_FAULT_POINTS=20 CIC_FAULT_REPORT=faults.json \\
        python -m pytest -q tests/faults/test_kill9_custodial.py

``CIC_TEST_FAULT_SEED=N`` (default 4) picks other kill points; a failure names the point.
"""

from __future__ import annotations

import random
from pathlib import Path

from cic_seeding.config import Settings
from cic_seeding.datadir import DataDir
from cic_seeding.state import FUND
from cic_seeding.sync.run import run_sync
from cic_seeding.sync.syncer import SyncOptions
from cic_seeding.verify import VerifyOptions, run_verify
from tests.custodial.world import (
    CustodialLedger,
    Harness,
    assert_each_paid_once,
    assert_engine_signed_the_balances,
    make_data,
    read_custodial_ledger,
)
from tests.e2e.procs import clean_env, files_in, seed_args
from tests.faults.kills import (
    FAULT_POINTS,
    FAULT_SEED,
    KillPoint,
    Probe,
    Tally,
    kill_at,
    payment_count,
    plan,
    run_to_end,
    state_count,
)
from tests.faults.report import FaultReport

BATCH = 10
ACCOUNTS = "SELECT count(*) FROM accounts"
TRANSFERS = "SELECT count(*) FROM txs WHERE kind = 'transfer'"


def _env(harness: Harness) -> dict[str, str]:
    return clean_env(CIC_CUSTODIAL_BROKER_URL=harness.broker_url,
                     CIC_CUSTODIAL_QUEUE=harness.setup.queue, CIC_BATCH_SIZE=str(BATCH))


def _owed(data: Path, users: int) -> int:
    """Opening balances the first ``users`` users are owed (those with a balance > 0)."""
    balances = DataDir(data).balances()
    return sum(1 for r in list(DataDir(data).users())[:users]
               if balances[r.address.lower()[2:]] > 0)


def _tally_and_check(settings: Settings, harness: Harness, users: int,
                     before: CustodialLedger, tally: Tally) -> None:
    """Count users lost and anything made or paid twice into ``tally``, then assert there is
    none and that the verifier agrees."""
    ledger = read_custodial_ledger(settings)
    (accounts, request_ids), = harness.sql("SELECT count(*), count(DISTINCT request_id) "
                                           "FROM accounts")
    wrong = ledger.wrong_balances().values()
    registrations = ledger.index_entries - before.index_entries
    tally.users_lost = (users - len(ledger.targets)
                        + sum(1 for registered in ledger.registered.values() if not registered)
                        + sum(1 for have, want in wrong if have < want))
    tally.double_payments = (accounts - request_ids + max(0, request_ids - users)
                             + max(0, registrations - users)
                             + sum(1 for have, want in wrong if have > want))
    assert (accounts, request_ids) == (users, users), "one engine account per user"
    assert_each_paid_once(settings, users, before)
    assert_engine_signed_the_balances(settings, harness.schema)
    verify = run_verify(settings, VerifyOptions(importer="cic_eth"))
    assert verify.ok, verify.render_text()


# --- the importer -------------------------------------------------------------------------------


def test_cic_eth_import_killed_at_seeded_points(harness: Harness, tmp_path: Path,
                                                fault_report: FaultReport) -> None:
    harness.start(1)
    users = max(100, 5 * FAULT_POINTS)
    data = make_data(tmp_path, users, seed=43)
    settings = harness.settings(data, batch_size=BATCH)
    tally = fault_report.tally("cic_eth")
    tally.users = users
    before = read_custodial_ledger(settings)
    # once the engine made accounts (replies perhaps not taken), once requests were recorded
    # as submitted, users confirmed, and once their records were written under new/
    probes = [Probe("engine accounts", lambda: harness.count(ACCOUNTS)),
              Probe("users submitted",
                    lambda: state_count(data, "cic_eth", "submitted", "confirmed")),
              Probe("users confirmed", lambda: state_count(data, "cic_eth", "confirmed")),
              Probe("new/ records", lambda: files_in(data / "new"))]
    # (FAULT_SEED + 6: the default seed's short sample kills at three different probes)
    points = plan(random.Random(FAULT_SEED + 6), probes, 5, users - 2 * BATCH)
    args = seed_args(data, harness.devnet)
    kill_at("cic_eth/seed.py", args, points, cwd=tmp_path, env=_env(harness), tally=tally)
    assert state_count(data, "cic_eth", "confirmed") < users, "nothing left for the rerun"
    run_to_end("cic_eth/seed.py", args, cwd=tmp_path, env=_env(harness), tally=tally)
    assert state_count(data, "cic_eth", "confirmed") == users

    sync = run_sync(settings, "cic_eth", SyncOptions(timeout=120, poll=0.05))
    assert sync.ok and sync.done == users, sync.render_text()
    _tally_and_check(settings, harness, users, before, tally)


# --- the syncer ---------------------------------------------------------------------------------


def test_cic_eth_sync_killed_at_seeded_points(harness: Harness, tmp_path: Path,
                                              fault_report: FaultReport) -> None:
    harness.start(1)
    users = max(100, 5 * FAULT_POINTS)
    data = make_data(tmp_path, users, seed=44)
    settings = harness.settings(data, batch_size=BATCH)
    tally = fault_report.tally("sync (cic_eth)")
    tally.users = users
    before = read_custodial_ledger(settings)
    env = _env(harness)
    seed = seed_args(data, harness.devnet)
    args = seed_args(data, harness.devnet, "--timeout", "120", "--poll", "0.05")
    rng = random.Random(FAULT_SEED + 5)
    # a balance is floated to the engine's signer (recorded as submitted, with raw bytes),
    # transferred by the engine (a row of its txs), then confirmed
    probes = [Probe("balances floated", lambda: payment_count(data, "cic_eth", "submitted",
                                                              "confirmed", kind=FUND)),
              Probe("engine transfers", lambda: harness.count(TRANSFERS)),
              Probe("balances confirmed",
                    lambda: payment_count(data, "cic_eth", "confirmed", kind=FUND))]

    # half the users imported: the syncer pays them, then waits for the rest and is killed
    # there (every balance confirmed), or earlier, mid-round
    half = users // 2
    seeding = Tally("cic_eth")  # the seed runs are not the syncer's
    run_to_end("cic_eth/seed.py", [*seed, "--limit", str(half)], cwd=tmp_path, env=env,
               tally=seeding)
    paid = _owed(data, half)
    first = plan(rng, probes, 1, paid, max(1, FAULT_POINTS // 3))
    kill_at("cic_eth/sync.py", args, first, cwd=tmp_path, env=env, tally=tally)
    waiting = KillPoint(probes[-1], paid)
    kill_at("cic_eth/sync.py", args, [waiting], cwd=tmp_path, env=env, tally=tally)
    run_to_end("cic_eth/seed.py", seed, cwd=tmp_path, env=env, tally=seeding)

    # one round floats the other half's balances (a transaction per batch), asks the engine
    # for their transfers and confirms them: each kill lands in that round. (The engine's
    # status answers confirm up to 500 at once, so a kill may come after the last
    # confirmation, before the run ends: the last rerun then only finds everything paid.)
    owed = _owed(data, users)
    rest = FAULT_POINTS - len(first) - 1
    if rest > 0:
        kill_at("cic_eth/sync.py", args, plan(rng, probes, paid + 3, owed - 2 * BATCH, rest),
                cwd=tmp_path, env=env, tally=tally)
    run_to_end("cic_eth/sync.py", args, cwd=tmp_path, env=env, tally=tally)
    assert payment_count(data, "cic_eth", "confirmed", kind=FUND) == owed
    _tally_and_check(settings, harness, users, before, tally)
