"""``cic-seed verify`` / ``verify.py``: exit codes, formats, files; the chain is a fake."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cic_seeding.cli import verify_cmd
from cic_seeding.cli.main import main
from tests.helpers import run_script
from tests.verify.fakes import World, make_world
from tests.verify.test_runner import BUILT_IN


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.chdir(tmp_path)  # no config/cic-seed.toml of the checkout
    w = make_world(tmp_path, n=6)
    monkeypatch.setattr(verify_cmd, "CONNECT", lambda settings: w.chain)
    return w


def cic_verify(world: World, *args: str) -> int:
    return main(["verify", world.settings.data_dir, "--exclude", "local_key", *args])


def test_exit_0_when_all_pass(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert cic_verify(world) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "accounts_index: 6/6" and "\x1b[" not in out
    assert out.splitlines()[-1].endswith("all ok")


def test_exit_1_when_a_check_fails(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.chain.native[world.addresses[1]] = 0
    assert cic_verify(world) == 1
    assert "gas: 5/6, 1 failed" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["--include", "balanse"], "error: unknown check 'balanse'; did you mean balance?"),
    (["--balance-adjust", "lots"], "error: --balance-adjust 'lots' is not a deviation"),
    (["--format", "xml"], "Invalid value for '--format'"),
])
def test_exit_2_on_usage_errors(world: World, capsys: pytest.CaptureFixture[str],
                                args: list[str], message: str) -> None:
    assert cic_verify(world, *args) == 2
    assert message in capsys.readouterr().err


def test_negative_balance_adjust_is_a_value(world: World) -> None:
    world.chain.balances[world.addresses[0]] -= 10**6
    assert cic_verify(world, "--balance-adjust", "-1") == 0
    assert cic_verify(world, "--balance-adjust=+1") == 1


def test_junit_to_a_file_and_results_dir(world: World, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    world.chain.registered[world.addresses[2]] = False
    report, results = tmp_path / "report.xml", tmp_path / "results"
    code = cic_verify(world, "--format", "junit", "--output", str(report), "--results-dir",
                      str(results), "-x")
    assert code == 1
    suite = ET.parse(report).getroot()
    assert suite.get("failures") == "1"
    assert "accounts_index: 5/6, 1 failed" in capsys.readouterr().out
    assert (results / "error_accounts_index").read_text().startswith(world.addresses[2] + " ")


def test_json_to_stdout(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert cic_verify(world, "--format", "json", "--include", "gas") == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc["checks"]) == ["gas"] and doc["checks"]["gas"]["ok"] == 6


def test_token_symbol_flag_is_honoured(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert cic_verify(world, "--token-symbol", "SRF") == 1
    assert "not the token symbol 'SRF'" in capsys.readouterr().err


def test_script_lists_checks_and_rejects_unknown_ids(tmp_path: Path) -> None:
    listed = run_script("verify.py", "--list-verifications", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    ids = [line.split()[0] for line in listed.stdout.splitlines()]
    assert ids == BUILT_IN
    proc = run_script("verify.py", str(tmp_path), "--exclude", "zzz", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: unknown check 'zzz'; valid checks: " + ", ".join(BUILT_IN)]


def test_missing_dir_argument(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["verify"]) == 2
    assert "error: missing DIR" in capsys.readouterr().err
