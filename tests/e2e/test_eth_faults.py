"""Issue 4's fault acceptance on a real devnet: two senders on one key, reorgs, and a
registration on an AccountsIndex that is not the registry's.

The kill -9 sweeps of ``eth/seed.py`` and ``eth/sync.py`` (seeded kill points, rerun after each)
live in ``tests/faults/test_kill9.py``; every run must end with each user registered once and
paid exactly once (exact on-chain balances).
"""

from __future__ import annotations

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
    running,
    seed_args,
    wait_for,
)

USERS = 150


def import_in_process(settings: Settings, limit: int | None = None) -> None:
    importer = EthImporter(settings)
    try:
        result = importer.run(limit=limit)
    finally:
        importer.close()
    assert result.ok, result.render_text()


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
