"""The custodial pipeline with real workers: ``devnet up --custodial``, import, sync, verify."""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from pathlib import Path

import pytest

from cic_devnet.custodial.devnet import EngineOptions
from cic_devnet.devnet import Devnet
from cic_seeding.config import load_settings
from cic_seeding.custodial import TASK_STATUS, engine_client
from cic_seeding.datadir import DataDir
from cic_seeding.importers.cic_eth import CicEthImporter
from cic_seeding.records.chainspec import ChainSpec
from cic_seeding.records.person import identity_addresses
from cic_seeding.state import open_state_store
from cic_seeding.sync.run import run_sync
from cic_seeding.sync.syncer import SyncOptions
from cic_seeding.verify import VerifyOptions, run_verify
from tests.conftest import devnet_settings, start_devnet
from tests.custodial.world import (
    REDIS_URL,
    assert_each_paid_once,
    assert_engine_signed_the_balances,
    assert_engine_txs_archived,
    assert_users_txs_archived,
    make_data,
    purge_queue,
    read_custodial_ledger,
    run_import,
)
from tests.helpers import run_cli, run_script
from tests.pg import PG_URL
from tests.pg import sql_in as _sql


def test_100_users_through_two_workers_every_check_passes(
        tmp_path: Path, pg_schema: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # ten create_many tasks of ten users: work for both workers, as a batch of many users
    # would be shared among several workers' tasks
    monkeypatch.setattr(CicEthImporter, "create_chunk", 10)
    options = EngineOptions(db_url=PG_URL, schema=pg_schema, workers=2,
                            queue=f"test_{uuid.uuid4().hex[:12]}")
    for devnet in start_devnet(tmp_path / "devnet", custodial=True, custodial_options=options):
        _pipeline(devnet, tmp_path, pg_schema)
    purge_queue(REDIS_URL, str(options.queue))


def _pipeline(devnet: Devnet, tmp_path: Path, pg_schema: str) -> None:
    """100 users: import, sync, verify; one account and one registration each; the scripts
    rerun without creating or paying anything."""
    settings = devnet_settings(devnet, make_data(tmp_path, 100, seed=606))
    before = read_custodial_ledger(settings)

    result = run_import(settings)  # the engine is found through devnet.json
    assert result.ok and result.confirmed == 100, result.render_text()
    # the engine's registrations, gas gifts and faucet payouts, saved by the importer
    assert assert_engine_txs_archived(settings, pg_schema) == \
        {"register": 100, "gas": 100, "faucet": 100}
    sync = run_sync(settings, "cic_eth", SyncOptions(timeout=120, poll=0.1))
    assert sync.ok and sync.done == 100, sync.render_text()
    assert_each_paid_once(settings, 100, before)

    verify = run_verify(settings, VerifyOptions(importer="cic_eth"))
    assert verify.ok, verify.render_text()
    checks = verify.checks
    for check in ("accounts_index", "balance", "faucet", "gas", "custodial_key"):
        assert checks[check].ok == 100, checks[check].line()
    # no keyfiles (the engine holds the keys), no USSD accounts: not applicable, not skipped
    assert verify.not_applicable() == {"local_key": "custodial users",
                                       "ussd": "users not registered through USSD",
                                       "ussd_pins": "users not registered through USSD"}
    assert (checks["local_key"].not_applicable, checks["local_key"].skipped) == (100, 0)

    # every user one account, one registration, gas gift, faucet payout and balance transfer
    # (signed by the engine); two workers, one signer, no nonce error
    assert _sql(pg_schema, "SELECT count(*), count(DISTINCT request_id) FROM accounts") \
        == [(100, 100)]
    assert_engine_signed_the_balances(settings, pg_schema)
    owed = sum(1 for b in DataDir(settings.data_dir).balances().values() if b > 0)
    # tx/: every transaction of the engine (the balances now too) and of the ledger
    assert assert_engine_txs_archived(settings, pg_schema) == \
        {"register": 100, "gas": 100, "faucet": 100, "transfer": owed}
    assert assert_users_txs_archived(settings, "cic_eth") == {"register": 100, "fund": owed}
    txs = _sql(pg_schema, "SELECT kind, status, error_class, attempts, nonce FROM txs "
                          "ORDER BY nonce")
    assert Counter(t[0] for t in txs) == {"register": 100, "gas": 100, "faucet": 100,
                                          "transfer": owed}
    assert {t[1:4] for t in txs} == {("mined", None, 1)}
    assert [t[4] for t in txs] == list(range(len(txs)))  # no gap, no reuse
    workers = devnet.info["custodial"]["workers"]
    logs = [Path(w["log"]).read_text() for w in workers]
    assert all("cic_custodial.account.create_many" in log for log in logs), "a worker idled"
    assert not any("refused" in log for log in logs)

    data = DataDir(settings.data_dir)
    chain = ChainSpec.parse(settings.chain_spec)
    with open_state_store(settings) as store:
        targets = store.targets("cic_eth")
    assert len(targets) == 100 and all(t != a for t, a in targets.items())
    for target, user in list(targets.items())[:5]:
        record = json.loads(data.new.get(target))
        assert target in [a.lower() for a in identity_addresses(record, chain)]
        assert user in [a.lower() for a in identity_addresses(record, chain)]

    # the scripts, rerun: nothing new is created, nothing paid again
    args = ("--dir", settings.data_dir, "--devnet", str(devnet.directory))
    seed = run_script("cic_eth/seed.py", *args, cwd=tmp_path)
    assert seed.returncode == 0, seed.stderr
    assert "100 before, 0 failed" in seed.stdout
    again = run_script("cic_eth/sync.py", *args, "--timeout", "60", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert_each_paid_once(settings, 100, before)
    assert _sql(pg_schema, "SELECT count(*) FROM accounts") == [(100,)]


def test_devnet_cli_up_custodial_and_down_stops_the_workers(tmp_path: Path,
                                                            pg_schema: str) -> None:
    env = {"CIC_CUSTODIAL_DB_URL": PG_URL, "CIC_CUSTODIAL_DB_SCHEMA": pg_schema,
           "CIC_CUSTODIAL_QUEUE": f"test_{uuid.uuid4().hex[:12]}"}
    directory = tmp_path / "dn"
    up = run_cli("devnet", "up", "--dir", str(directory), "--custodial", env=env)
    info = json.loads((directory / "devnet.json").read_text()) if up.returncode == 0 else {}
    try:
        assert up.returncode == 0, up.stderr
        assert f"custodial engine: 1 worker(s) on queue {env['CIC_CUSTODIAL_QUEUE']}" \
            in up.stderr
        engine = info["custodial"]
        assert engine["db_schema"] == pg_schema
        assert (directory / engine["passphrase_file"]).stat().st_mode & 0o777 == 0o600
        client = engine_client(
            load_settings({"devnet_dir": str(directory)}, config_file=None, environ={}))
        try:
            status = client.call(TASK_STATUS, {}, timeout=30)
        finally:
            client.close()
        assert status["signer"] == engine["signer"]["address"].lower()
        assert status["accounts_index"] == info["contracts"]["AccountsIndex"].lower()
    finally:
        down = run_cli("devnet", "down", "--dir", str(directory))
        purge_queue(REDIS_URL, env["CIC_CUSTODIAL_QUEUE"])
    assert down.returncode == 0, down.stderr
    for worker in info["custodial"]["workers"]:
        pid = worker["pid"]
        assert not os.path.exists(f"/proc/{pid}/cmdline") or \
            b"cic_devnet.custodial" not in Path(f"/proc/{pid}/cmdline").read_bytes()

