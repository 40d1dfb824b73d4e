"""Opening balances of custodial users (``cic-seed sync cic_eth``): transfers the engine signs,
exactly once per user whatever kills the syncer; an engine that never answers or gives up a
transfer is a clear error naming the user."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from cic_seeding.config import Settings
from cic_seeding.custodial import TASK_TRANSFER, CustodialClient, endpoint
from cic_seeding.datadir import DataDir
from cic_seeding.errors import CustodialTimeoutError
from cic_seeding.state import FUND, Status, open_state_store
from cic_seeding.sync import custodial
from cic_seeding.sync.run import run_sync
from cic_seeding.sync.syncer import SyncOptions, SyncResult
from tests.custodial.world import (
    Harness,
    assert_each_paid_once,
    assert_engine_signed_the_balances,
    assert_engine_txs_archived,
    make_data,
    purge_queue,
    read_custodial_ledger,
    run_import,
)
from tests.e2e.procs import clean_env, db_count, running, wait_for

USERS = 60
FLOATS_SENT = ("SELECT count(DISTINCT tx_hash) FROM payments WHERE importer = 'cic_eth' AND "
               "kind = 'fund' AND raw_tx IS NOT NULL AND raw_tx <> ''")


def _sync(settings: Settings) -> SyncResult:
    return run_sync(settings, "cic_eth", SyncOptions(timeout=120, poll=0.05))


def test_syncer_killed_mid_payments_then_rerun_pays_each_user_once(
        harness: Harness, tmp_path: Path) -> None:
    harness.start(1)
    data = make_data(tmp_path, USERS, seed=909)
    settings = harness.settings(data, batch_size=8)  # several floats, several rounds
    before = read_custodial_ledger(settings)
    imported = run_import(settings)
    assert imported.ok, imported.render_text()

    env = clean_env(CIC_CUSTODIAL_BROKER_URL=harness.broker_url,
                    CIC_CUSTODIAL_QUEUE=harness.setup.queue, CIC_BATCH_SIZE="8")
    args = ("--dir", str(data), "--devnet", str(harness.devnet.directory), "--timeout", "120",
            "--poll", "0.05")
    transfers = "SELECT count(*) FROM txs WHERE kind = 'transfer'"
    kill_points = [("floats sent", lambda: db_count(data, FLOATS_SENT) >= 3),
                   ("engine transfers", lambda: harness.count(transfers) >= 20),
                   ("engine transfers", lambda: harness.count(transfers) >= 45)]
    for what, reached in kill_points:
        with running("cic_eth/sync.py", *args, cwd=tmp_path, env=env) as run:
            wait_for(reached, timeout=120, what=what, while_alive=run)
            assert run.kill9() == -9, f"the syncer ended before it was killed: {run.report()}"

    sync = _sync(settings)
    assert sync.ok and sync.done == USERS, sync.render_text()
    assert_each_paid_once(settings, USERS, before)  # exact balances; every float passed on
    assert_engine_signed_the_balances(settings, harness.schema)
    # whatever the kills: every registration, gas gift, faucet payout and opening balance
    # the engine signed is in tx/ (and every float, signed here)
    archived = assert_engine_txs_archived(settings, harness.schema)
    assert archived["register"] == archived["gas"] == archived["faucet"] == USERS
    assert archived["transfer"] == sum(1 for b in DataDir(data).balances().values() if b)


class _Silent(CustodialClient):
    """Sends every transfer request to a queue nobody consumes: no reply ever comes."""

    void = "void_transfers"

    def send(self, task: str, requests: Sequence[Mapping[str, Any]]) -> list[str]:
        if task != TASK_TRANSFER:
            return super().send(task, requests)
        queue, self.queue = self.queue, self.void
        try:
            return super().send(task, requests)
        finally:
            self.queue = queue


def test_a_transfer_reply_that_never_comes_names_the_user_and_a_rerun_pays_once(
        harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    harness.start(1)
    settings = harness.settings(make_data(tmp_path, 5, seed=910), custodial_timeout=2)
    before = read_custodial_ledger(settings)
    assert run_import(settings).ok
    monkeypatch.setattr(custodial, "engine_client",
                        lambda s: _Silent(*endpoint(s), timeout=s.custodial_timeout))
    try:
        with pytest.raises(CustodialTimeoutError) as caught:
            _sync(settings)
    finally:
        purge_queue(harness.broker_url, _Silent.void)
    user = caught.value.user
    assert re.match(rf"no reply from the custodial engine for user {user} \(and 4 more users\) "
                    r"to tasks \S+, \S+ \(cic_custodial.token.transfer\) within 2s",
                    str(caught.value)), str(caught.value)
    with open_state_store(settings) as store:  # floated, the transfers still to be asked
        waiting = store.payments("cic_eth", [Status.SUBMITTED], kind=FUND)
    assert len(waiting) == 5 and all(p.raw_tx for p in waiting)

    monkeypatch.undo()
    sync = _sync(settings)
    assert sync.ok and sync.done == 5, sync.render_text()
    assert_each_paid_once(settings, 5, before)  # the floats were not sent again
    assert_engine_signed_the_balances(settings, harness.schema)


class _Greedy(CustodialClient):
    """Asks the engine to transfer a thousand times each balance: more than the float."""

    def send(self, task: str, requests: Sequence[Mapping[str, Any]]) -> list[str]:
        if task == TASK_TRANSFER:
            requests = [{**r, "amount": r["amount"] * 1000} for r in requests]
        return super().send(task, requests)


def test_a_transfer_the_engine_gives_up_fails_the_payment_with_its_words(
        harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    harness.start(1)
    settings = harness.settings(make_data(tmp_path, 3, seed=911))
    assert run_import(settings).ok
    monkeypatch.setattr(custodial, "engine_client",
                        lambda s: _Greedy(*endpoint(s), timeout=s.custodial_timeout))
    sync = _sync(settings)
    assert not sync.ok and sync.failed == 3, sync.render_text()
    for address, kind, reason in sync.failures:
        assert kind == FUND
        assert re.match(rf"the custodial engine gave up the transfer of \d+ to user {address} "
                        r"\(its tx \d+, 0x[0-9a-f]{64}\): reverted: reverted in block \d+",
                        reason), reason
