"""`cic-seed import eth --sync`: the syncer pays beside the import, in one run, exactly once;
a user the import refuses is left unpaid and the run still ends."""

from __future__ import annotations

from pathlib import Path

from cic_devnet.devnet import Devnet
from cic_seeding.datadir import DataDir
from cic_seeding.generate.generator import GenerateOptions, generate
from tests.conftest import devnet_settings
from tests.e2e.chain_check import read_ledger
from tests.helpers import run_cli


def test_import_with_sync_pays_everyone_once_and_ends_despite_a_refused_user(
        module_devnet: Devnet, tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate(GenerateOptions(directory=data, count=60, seed=6060, workers=1))
    settings = devnet_settings(module_devnet, data).replace(batch_size=20)
    dd = DataDir(data)
    refused = list(dd.users())[7]
    lines = dd.balances_csv.read_text().splitlines()
    row = next(i for i, line in enumerate(lines)
               if line.lower().startswith(refused.address[2:].lower()))
    lines[row] = lines[row].rsplit(",", 1)[0] + ",12x"
    dd.balances_csv.write_text("\n".join(lines) + "\n")

    run = run_cli("import", "eth", str(data), "--sync", "--batch-size", "20",
                  "--devnet", str(module_devnet.directory))
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == 1, run.stdout + run.stderr
    assert "59 users imported this run" in run.stdout, run.stdout
    assert "59/60 users paid" in run.stdout, run.stdout

    ledger = read_ledger(settings)
    others = [u for u in ledger.users if u != refused.address]
    assert not ledger.registered[refused.address]
    assert all(ledger.registered[u] for u in others)
    assert {u: ledger.balances[u] for u in others} == {u: ledger.expected[u] for u in others}
    assert {ledger.native[u] for u in others} == {settings.gas_gift}

    # a rerun has nothing left to send for the others (and still refuses the one)
    again = run_cli("import", "eth", str(data), "--sync", "--devnet",
                    str(module_devnet.directory))
    assert again.returncode == 1 and "59 before" in again.stdout, again.stdout
    assert read_ledger(settings).balances == ledger.balances
