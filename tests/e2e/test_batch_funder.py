"""The opt-in BatchFunder path (``--batch-funder``) on a real devnet: exact balances, kill -9 of
seed and of sync, and an opening balance paid at registration never paid again -- even when the
state store forgot everything or the syncer runs without the flag."""

from __future__ import annotations

import os
import random
from pathlib import Path

from cic_devnet.devnet import Devnet
from cic_seeding.chain.connect import connect
from cic_seeding.chain.registry import ACCOUNTS_INDEX, ADDRESS_ADDED
from cic_seeding.chain.registry import FAUCET as FAUCET_ABI
from cic_seeding.config import Settings
from cic_seeding.importers.eth import EthImporter
from cic_seeding.state import FAUCET, FUND, GAS, Status, open_state_store
from cic_seeding.sync.run import run_sync
from cic_seeding.sync.syncer import SyncOptions
from tests.e2e.chain_check import read_ledger
from tests.e2e.ledger import Holdings, assert_paid_exactly_once, make_data, planned_payments
from tests.e2e.procs import (
    clean_env,
    files_in,
    kill_points,
    payments_in,
    running,
    seed_args,
    users_in,
    wait_for,
)
from tests.e2e.test_eth_pipeline import seed_users

FAULT_SEED = int(os.environ.get("CIC_TEST_FAULT_SEED", "4"))
SIGKILLED = -9


def import_users(settings: Settings, limit: int | None = None) -> None:
    importer = EthImporter(settings)
    try:
        result = importer.run(limit=limit)
    finally:
        importer.close()
    assert result.ok, result.render_text()


def registering_txs(settings: Settings) -> dict[str, str]:
    """Address -> hash of the transaction that emitted its AddressAdded."""
    client = connect(settings, signer=False).client
    index = connect(settings, signer=False).accounts_index
    logs = client.logs(index, ADDRESS_ADDED, 0, client.head())
    return {"0x" + str(e["data"])[-40:].lower(): str(e["transactionHash"]) for e in logs}


def test_300_users_batch_funded_exactly(module_devnet: Devnet, tmp_path: Path) -> None:
    settings = seed_users(module_devnet, tmp_path, 300, seed=700, batch_funder="devnet")
    network = connect(settings)
    funder = module_devnet.info["contracts"]["BatchFunder"]
    before = Holdings.read(network)
    import_users(settings)
    sync = run_sync(settings, "eth", SyncOptions(timeout=120, poll=0.05))
    assert sync.ok and sync.done == 300, sync.render_text()
    ledger = read_ledger(settings)
    assert all(ledger.registered.values())
    assert ledger.wrong_balances() == {}
    assert all(ledger.faucet_used.values())
    assert set(ledger.native.values()) == {settings.gas_gift}
    after = Holdings.read(network)
    amount = network.client.call(network.faucet, FAUCET_ABI.fn("tokenAmount"))
    assert before.faucet - after.faucet == 300 * amount
    assert before.signer - after.signer == sum(ledger.expected.values()) - 300 * amount
    # registrations == users: one AddressAdded each, emitted by a BatchFunder transaction
    regs = registering_txs(settings)
    ours = {u.lower(): regs.get(u.lower()) for u in ledger.users}
    assert None not in ours.values()
    client = network.client
    txs = client.rpc.batch([("eth_getTransactionByHash", [h]) for h in set(ours.values())])
    assert {str(t["to"]).lower() for t in txs} == {funder.lower()}
    assert len(txs) <= 300 // 100 + 2  # batches of 250 in chunks of 100
    # the ledger: every opening balance confirmed from its registering transaction; faucet
    # and gas paid many per transaction
    store = open_state_store(settings)
    try:
        fund = store.payments("eth", kind=FUND)
        assert fund and all(p.status is Status.CONFIRMED for p in fund)
        assert all(p.tx_hash == ours[p.address] for p in fund)
        for kind in (FAUCET, GAS):
            rows = store.payments("eth", kind=kind)
            assert len(rows) == 300 and all(p.status is Status.CONFIRMED for p in rows)
            assert len({p.tx_hash for p in rows}) <= 6  # 100 payments a round, per kind
    finally:
        store.close()

    # a rerun of both sends nothing and pays nothing
    again = EthImporter(settings)
    try:
        rerun = again.run()
    finally:
        again.close()
    assert rerun.submitted == 0 and rerun.done_before == 300
    assert run_sync(settings, "eth", SyncOptions(timeout=60, poll=0.05)).ok
    assert read_ledger(settings).wrong_balances() == {}


def test_prepaid_balance_is_read_from_chain_not_from_the_store(devnet: Devnet,
                                                              tmp_path: Path) -> None:
    """The state store is lost after a batch import and the syncer runs *without* the flag
    from block 0: it still never pays an opening balance the BatchFunder paid."""
    settings = make_data(devnet, tmp_path, 60, seed=701, batch_funder="devnet")
    before = Holdings.read(connect(settings))
    import_users(settings)
    (Path(settings.data_dir) / "state.db").unlink()
    plain = settings.replace(batch_funder="")
    result = run_sync(plain, "eth", SyncOptions(timeout=60, poll=0.05, from_block=0))
    assert result.ok and result.done == 60, result.render_text()
    assert_paid_exactly_once(settings, before)


def test_kill9_of_batch_seed_and_sync_then_rerun_pays_exactly_once(devnet: Devnet,
                                                                   tmp_path: Path) -> None:
    users = 150
    settings = make_data(devnet, tmp_path, users, seed=702)
    data = Path(settings.data_dir)
    network = connect(settings)
    before = Holdings.read(network)
    env = clean_env(CIC_BATCH_FUNDER="devnet", CIC_BATCH_SIZE="10")
    rng = random.Random(FAULT_SEED)

    # seed: killed right after a batch was broadcast (tx/ written, perhaps not recorded),
    # once registrations were recorded as submitted, and once they were confirmed
    first, second, third = (k // 10 for k in kill_points(rng, users, 3, gap=20))
    points = [("tx/ files", first, lambda: files_in(data / "tx")),
              ("users submitted", second * 10,
               lambda: users_in(data, "submitted", "confirmed")),
              ("users confirmed", third * 10, lambda: users_in(data, "confirmed"))]
    args = seed_args(data, devnet)
    for what, k, count in points:
        with running("eth/seed.py", *args, cwd=tmp_path, env=env) as seed:
            wait_for(lambda c=count, k=k: c() >= k, timeout=60,  # type: ignore[misc]
                     what=f"{k} {what} (fault seed {FAULT_SEED})", while_alive=seed)
            assert seed.kill9() == SIGKILLED, f"seed finished before the kill at {k} {what}"
        assert users_in(data, "confirmed") < users
    with running("eth/seed.py", *args, cwd=tmp_path, env=env) as seed:
        assert seed.wait(90) == 0, seed.report()
    assert network.client.call(network.accounts_index, ACCOUNTS_INDEX.fn("entryCount")) == users

    # sync: faucet and gas, 10 payments per BatchFunder transaction; killed while sending
    planned = planned_payments(data, users)
    prepaid = planned - 2 * users  # opening balances: confirmed as soon as they are planned
    sync_args = seed_args(data, devnet, "--timeout", "60", "--poll", "0.05")
    for k in kill_points(random.Random(FAULT_SEED + 1), 2 * users, 3, gap=40):
        with running("eth/sync.py", *sync_args, cwd=tmp_path, env=env) as sync:
            sent = lambda k=k: payments_in(data, "submitted", "confirmed") >= prepaid + k  # noqa: E731
            wait_for(sent, timeout=60, while_alive=sync,
                     what=f"{k} payments recorded as submitted (fault seed {FAULT_SEED})")
            assert sync.kill9() == SIGKILLED, f"sync finished before the kill at {k}"
        assert payments_in(data, "confirmed") < planned
    with running("eth/sync.py", *sync_args, cwd=tmp_path, env=env) as sync:
        assert sync.wait(90) == 0, sync.report()
    assert payments_in(data, "confirmed") == planned
    assert_paid_exactly_once(settings, before)
