"""Issue 4's fault acceptance on a real devnet: kill -9, two senders on one key, reorgs, and a
registration on an AccountsIndex that is not the registry's.

The seed/sync scripts run as subprocesses (``eth/seed.py``, ``eth/sync.py``) and are killed
with SIGKILL at points read from the state store and the data directory; every rerun must end
with each user registered once and paid exactly once (exact on-chain balances).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from cic_devnet import anvil
from cic_devnet.devnet import Devnet
from cic_seeding.chain.connect import connect
from cic_seeding.chain.registry import ACCOUNTS_INDEX
from cic_seeding.config import Settings
from cic_seeding.datadir import DataDir
from cic_seeding.importers.eth import EthImporter
from cic_seeding.sync.run import run_sync
from cic_seeding.sync.syncer import SyncOptions
from tests.e2e.chain_check import read_ledger
from tests.e2e.ledger import (
    Holdings,
    assert_paid_exactly_once,
    deploy_accounts_index,
    index_add,
    make_data,
)
from tests.e2e.procs import (
    clean_env,
    db_count,
    db_rows,
    files_in,
    payments_in,
    running,
    seed_args,
    users_in,
    wait_for,
)

#: Reproduces the kill points; override with CIC_TEST_FAULT_SEED to explore others.
FAULT_SEED = int(os.environ.get("CIC_TEST_FAULT_SEED", "4"))
USERS = 150
SIGKILLED = -9


def kill_points(rng: random.Random, total: int, count: int, gap: int) -> list[int]:
    """``count`` increasing thresholds in ``[gap, total - 2 gap)``, at least ``gap`` apart
    (the last run killed still has work left when the kill lands)."""
    while True:
        points = sorted(rng.sample(range(gap, total - 2 * gap), count))
        if all(b - a >= gap for a, b in zip(points, points[1:], strict=False)):
            return points


def import_in_process(settings: Settings, limit: int | None = None) -> None:
    importer = EthImporter(settings)
    try:
        result = importer.run(limit=limit)
    finally:
        importer.close()
    assert result.ok, result.render_text()


def planned_payments(data: Path, users: int) -> int:
    """Payments of the first ``users`` users: faucet, gas, and fund where the balance > 0."""
    balances = DataDir(data).balances()
    rows = list(DataDir(data).users())[:users]
    return 2 * users + sum(1 for r in rows if balances[r.address.lower()[2:]] > 0)


def test_kill9_of_seed_at_several_points_then_rerun_registers_each_user_once(
        devnet: Devnet, tmp_path: Path) -> None:
    settings = make_data(devnet, tmp_path, USERS, seed=41)
    data = Path(settings.data_dir)
    rng = random.Random(FAULT_SEED)
    first, second, third = kill_points(rng, USERS, 3, gap=20)
    # each run is killed at a different kind of point: right after transactions were broadcast
    # (tx/ written, possibly not yet recorded), once registrations were recorded as submitted,
    # and once they were confirmed
    points = [("tx/ files", first, lambda: files_in(data / "tx")),
              ("users submitted", second, lambda: users_in(data, "submitted", "confirmed")),
              ("users confirmed", third, lambda: users_in(data, "confirmed"))]
    args = seed_args(data, devnet, "--batch-size", "10")
    for what, k, count in points:
        with running("eth/seed.py", *args, cwd=tmp_path) as seed:
            wait_for(lambda c=count, k=k: c() >= k, timeout=60,  # type: ignore[misc]
                     what=f"{k} {what} (fault seed {FAULT_SEED})", while_alive=seed)
            assert seed.kill9() == SIGKILLED, f"seed finished before the kill at {k} {what}"
        assert users_in(data, "confirmed") < USERS
    with running("eth/seed.py", *args, cwd=tmp_path) as seed:
        assert seed.wait(90) == 0, seed.report()
    assert users_in(data, "confirmed") == USERS

    network = connect(settings)
    assert network.client.call(network.accounts_index, ACCOUNTS_INDEX.fn("entryCount")) == USERS
    before = Holdings.read(network)
    result = run_sync(settings, "eth", SyncOptions(timeout=60, poll=0.05))
    assert result.ok and result.done == USERS, result.render_text()
    assert_paid_exactly_once(settings, before)


def test_kill9_of_sync_at_several_points_then_rerun_pays_exactly_once(
        devnet: Devnet, tmp_path: Path) -> None:
    settings = make_data(devnet, tmp_path, USERS, seed=42)
    data = Path(settings.data_dir)
    network = connect(settings)
    before = Holdings.read(network)
    env = clean_env(CIC_BATCH_SIZE="10")
    args = seed_args(data, devnet, "--timeout", "60", "--poll", "0.05")

    # half the users registered: the sync pays them, confirms, then waits for the rest and is
    # killed there, with payments recorded as confirmed
    half = USERS // 2
    import_in_process(settings, limit=half)
    with running("eth/sync.py", *args, cwd=tmp_path, env=env) as sync:
        paid = planned_payments(data, half)
        wait_for(lambda: payments_in(data, "confirmed") >= paid, timeout=60,
                 what=f"{paid} payments confirmed", while_alive=sync)
        assert sync.kill9() == SIGKILLED
    import_in_process(settings)

    # one round plans the other half's payments, sends them all (10 per batch: signed,
    # recorded as submitted, then broadcast and mined) and only then confirms them in one
    # step: each kill lands in the sending loop, the latest batch recorded, perhaps not sent
    planned = planned_payments(data, USERS)
    rng = random.Random(FAULT_SEED + 1)
    points = [paid + k for k in kill_points(rng, planned - paid, 3, gap=25)]
    for k in points:
        with running("eth/sync.py", *args, cwd=tmp_path, env=env) as sync:
            sent = lambda k=k: payments_in(data, "submitted", "confirmed") >= k  # noqa: E731
            wait_for(sent, timeout=60, while_alive=sync,
                     what=f"{k} payments recorded as submitted (fault seed {FAULT_SEED})")
            assert sync.kill9() == SIGKILLED, f"sync finished before the kill at {k}"
        assert payments_in(data, "confirmed") < planned
    with running("eth/sync.py", *args, cwd=tmp_path, env=env) as sync:
        assert sync.wait(90) == 0, sync.report()
    assert payments_in(data, "confirmed") == planned
    assert_paid_exactly_once(settings, before)


def test_seed_and_sync_at_once_with_one_signer_have_no_nonce_errors(
        devnet: Devnet, tmp_path: Path) -> None:
    settings = make_data(devnet, tmp_path, USERS, seed=43)
    data = Path(settings.data_dir)
    network = connect(settings)
    before = Holdings.read(network)
    sync_env = clean_env(CIC_BATCH_SIZE="10")
    # -v: a nonce conflict the payer recovers from is logged (info) and fails the test too
    with running("eth/sync.py", *seed_args(data, devnet, "--timeout", "90", "--poll", "0.05",
                                           "-v"), cwd=tmp_path, env=sync_env) as sync:
        # sync first, seed once sync is following the chain (its cursor is in the store):
        # otherwise a fast seed can finish before sync has started, and nothing overlaps
        wait_for(lambda: db_count(data, "SELECT COUNT(*) FROM cursors"), timeout=60,
                 what="the syncer's cursor", while_alive=sync)
        with running("eth/seed.py", *seed_args(data, devnet, "--batch-size", "10", "-v"),
                     cwd=tmp_path) as seed:
            assert seed.wait(90) == 0, seed.report()
        assert sync.wait(90) == 0, sync.report()
    for run in (seed, sync):
        assert "nonce" not in (run.stdout + run.stderr).lower(), run.report()
        assert "Traceback" not in run.stderr
    assert_paid_exactly_once(settings, before)
    # the two really interleaved on the one key: some payment took a nonce below the last add()
    client = network.client
    paid = [n for (n,) in db_rows(data, "SELECT nonce FROM payments WHERE nonce IS NOT NULL")]
    adds = [h for (h,) in db_rows(data, "SELECT tx_hash FROM user_txs")]
    add_nonces = [int(tx["nonce"], 16) for tx in client.rpc.batch(
        [("eth_getTransactionByHash", [h]) for h in adds]) if isinstance(tx, dict)]
    assert min(paid) < max(add_nonces), "seed and sync did not overlap; the test proves nothing"


def test_reorg_dropping_payments_is_rolled_back_and_paid_once(devnet: Devnet,
                                                              tmp_path: Path) -> None:
    """evm_snapshot before the payments, evm_revert after: they are gone, the rerun pays."""
    settings = make_data(devnet, tmp_path, 60, seed=44)
    import_in_process(settings)
    url = devnet.rpc_url
    before = Holdings.read(connect(settings))
    snap = anvil.snapshot(url)
    first = run_sync(settings, "eth", SyncOptions(timeout=60, poll=0.05))
    assert first.ok, first.render_text()
    assert_paid_exactly_once(settings, before)

    anvil.revert(url, snap)
    assert set(read_ledger(settings).balances.values()) == {0}, "the revert kept payments"
    anvil.mine(url)  # the chain moves on without them
    again = run_sync(settings, "eth", SyncOptions(timeout=60, poll=0.05))
    assert again.ok and again.reorgs >= 1, again.render_text()
    assert_paid_exactly_once(settings, before)


def test_anvil_reorg_of_payment_blocks_is_rolled_back_and_paid_once(devnet: Devnet,
                                                                    tmp_path: Path) -> None:
    """anvil_reorg replaces the payment blocks (same head number, other hashes, no payments)."""
    settings = make_data(devnet, tmp_path, 60, seed=45)
    import_in_process(settings)
    url = devnet.rpc_url
    before = Holdings.read(connect(settings))
    registered_at = connect(settings).client.head()
    first = run_sync(settings, "eth", SyncOptions(timeout=60, poll=0.05))
    assert first.ok, first.render_text()
    depth = connect(settings).client.head() - registered_at
    assert depth >= 1

    anvil.reorg(url, depth)
    ledger = read_ledger(settings)
    assert all(ledger.registered.values()) and set(ledger.balances.values()) == {0}
    again = run_sync(settings, "eth", SyncOptions(timeout=60, poll=0.05))
    assert again.ok and again.reorgs >= 1, again.render_text()
    assert_paid_exactly_once(settings, before)


def test_add_on_a_second_accounts_index_triggers_nothing(devnet: Devnet,
                                                        tmp_path: Path) -> None:
    settings = make_data(devnet, tmp_path, 30, seed=46)
    data = Path(settings.data_dir)
    importer = EthImporter(settings)
    try:
        result = importer.run(limit=29)  # the last user is not registered in the registry
    finally:
        importer.close()
    assert result.ok and result.confirmed == 29 and result.left == 1, result.render_text()
    outsider = list(DataDir(data).users())[-1].address
    network = connect(settings)
    other = deploy_accounts_index(network)
    index_add(network, other, outsider)
    assert network.client.call(other, ACCOUNTS_INDEX.fn("have"), outsider) is True
    assert network.client.call(network.accounts_index, ACCOUNTS_INDEX.fn("have"),
                               outsider) is False

    args = seed_args(data, devnet, "--timeout", "1.5", "--poll", "0.05")
    with running("eth/sync.py", *args, cwd=tmp_path) as sync:
        assert sync.wait(60) == 1, sync.report()
    assert "29/30 users paid" in sync.stdout and "1 not registered yet" in sync.stdout, \
        sync.report()
    assert "Traceback" not in sync.stderr
    ledger = read_ledger(settings)
    assert ledger.balances[outsider] == 0 and ledger.native[outsider] == 0
    assert not ledger.faucet_used[outsider]
    assert {u: b for u, b in ledger.wrong_balances().items() if u != outsider} == {}
    assert {u for u, n in ledger.native.items() if n != settings.gas_gift} == {outsider}
