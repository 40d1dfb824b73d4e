"""The gateway killed and restarted in the middle of an import: a rerun completes it, with no
duplicate account and nothing paid twice."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from cic_devnet.ussd.process import start_gateway
from cic_seeding.chain.connect import connect
from cic_seeding.chain.registry import FAUCET, TOKEN
from cic_seeding.datadir import DataDir
from cic_seeding.importers.base import ImportResult
from cic_seeding.importers.cic_ussd import CicUssdImporter
from cic_seeding.state import open_state_store
from cic_seeding.sync.run import run_sync
from cic_seeding.sync.syncer import SyncOptions
from tests.custodial.world import make_data
from tests.ussd.world import Stack, wait_for

USERS = 60
#: Seconds the gateway stays down (the client retries for about 5 s).
OUTAGE = 7.0


def test_gateway_restart_mid_import(stack: Stack, tmp_path: Path) -> None:
    data_dir = make_data(tmp_path, USERS, seed=909)
    settings = stack.settings(data_dir, batch_size=10, ussd_concurrency=4, ussd_max_wait=20)
    results: list[ImportResult] = []
    errors: list[BaseException] = []

    def run() -> None:
        importer = CicUssdImporter(settings)
        try:
            results.append(importer.run())
        except BaseException as exc:  # handed to the test below
            errors.append(exc)
        finally:
            importer.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_for(lambda: stack.sql("SELECT count(*) FROM ussd_accounts")[0][0] >= 15,
             timeout=60, what="15 registrations")
    stack.gateway.kill9()  # a crash: sessions in flight lose their answer
    time.sleep(OUTAGE)  # down past the client's retry budget: sessions fail
    stack.gateway = start_gateway(stack.gateway.options, port=stack.gateway.port)
    thread.join(180)
    assert not thread.is_alive() and not errors, errors
    (first,) = results
    assert first.failed > 0 and first.confirmed + first.failed == USERS, first.render_text()

    rerun = CicUssdImporter(settings)
    try:
        second = rerun.run()
    finally:
        rerun.close()
    assert second.ok, second.render_text()
    with open_state_store(settings) as store:
        targets = store.targets("cic_ussd")
    assert len(targets) == USERS and len(set(targets.values())) == USERS

    sync = run_sync(settings, "cic_ussd", SyncOptions(timeout=120, poll=0.1))
    assert sync.ok and sync.done == USERS, sync.render_text()
    assert run_sync(settings, "cic_ussd", SyncOptions(timeout=30, poll=0.1)).ok  # again

    rows = stack.sql("SELECT count(*), count(DISTINCT address) FROM ussd_accounts "
                     "WHERE phone = ANY(%s)", ([u.phone for u in DataDir(data_dir).users()],))
    assert rows == [(USERS, USERS)]
    assert stack.harness.count(
        "SELECT count(*) FROM accounts WHERE request_id LIKE 'ussd:%%'") == USERS
    network = connect(settings, signer=False)
    token = network.token()
    amount = network.client.call(network.faucet, FAUCET.fn("tokenAmount"))
    opening = DataDir(data_dir).balances()
    order = list(targets)
    have = network.client.call_many([(token.address, TOKEN.fn("balanceOf"), (t,))
                                     for t in order])
    want = [opening[targets[t][2:]] + amount for t in order]
    assert have == want  # every user paid exactly once
