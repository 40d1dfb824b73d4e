"""The verifier against a real seeded devnet: all pass, then tampering is caught by exact count."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from cic_devnet.devnet import Devnet
from cic_seeding.chain.connect import connect
from cic_seeding.chain.registry import TOKEN
from cic_seeding.chain.tx import Call
from cic_seeding.datadir import DataDir
from cic_seeding.importers.eth import EthImporter
from cic_seeding.sync.run import run_sync
from cic_seeding.sync.syncer import SyncOptions
from cic_seeding.verify import VerifyOptions, run_verify
from tests.e2e.test_eth_pipeline import seed_users
from tests.helpers import run_script


def test_verify_passes_then_catches_tampering(module_devnet: Devnet, tmp_path: Path) -> None:
    settings = seed_users(module_devnet, tmp_path, 60, seed=6060)
    importer = EthImporter(settings)
    try:
        assert importer.run().ok
    finally:
        importer.close()
    assert run_sync(settings, "eth", SyncOptions(timeout=60, poll=0.1)).ok

    clean = run_verify(settings, VerifyOptions())
    assert clean.ok, clean.render_text()
    assert {c: (r.ok, r.total) for c, r in clean.checks.items()} == {
        c: (60, 60) for c in ("accounts_index", "balance", "faucet", "gas", "local_key")}

    users = [u.address for u in DataDir(settings.data_dir).users()]
    net = connect(settings)
    token = net.token()
    net.client.transact(Call(token.address, TOKEN.encode("transfer", users[0], 1)), "tamper")
    net.client.transact(Call(token.address, TOKEN.encode("transfer", users[1], 3)), "tamper")
    (DataDir(settings.data_dir).keystore / f"{users[2].lower()[2:]}.json").unlink()

    data, devnet = str(settings.data_dir), str(module_devnet.directory)
    out = run_script("verify.py", data, "--devnet", devnet, "--format", "json")
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout[out.stdout.index("{"):])
    checks = report["checks"]
    assert checks["balance"]["failed"] == 2 and checks["local_key"]["failed"] == 1
    assert checks["accounts_index"]["failed"] == 0 and checks["gas"]["failed"] == 0

    # --balance-adjust is in whole tokens (6 decimals): 0.000003 accepts both deviations,
    # 0.000002 only the smaller one
    loose = run_verify(settings, VerifyOptions(include=("balance",), balance_adjust="0.000003"))
    assert loose.ok, loose.render_text()
    tight = run_verify(settings, VerifyOptions(include=("balance",), balance_adjust="0.000002"))
    assert tight.checks["balance"].failed == 1

    junit = tmp_path / "junit.xml"
    run = run_script("verify.py", data, "--devnet", devnet, "--format", "junit",
                     "--output", str(junit), "--results-dir", str(tmp_path / "results"))
    assert run.returncode == 1
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    assert suite is not None and int(suite.get("failures", "0")) == 2
    errors = (tmp_path / "results" / "error_balance").read_text().splitlines()
    assert sorted(line.split()[0].lower() for line in errors) == sorted(
        u.lower() for u in users[:2])

