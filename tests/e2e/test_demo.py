"""The README's main command, end to end, as a user runs it: the sovereign users, the USSD
users with a PIN login at the end, and ``--keep`` leaving every service running."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import psutil
import pytest

from cic_devnet.ussd.menus import format_amount
from cic_seeding.datadir import DataDir
from cic_seeding.generate.keys import preferred_language
from cic_seeding.ussd.texts import text
from tests.custodial.world import REDIS_URL, purge_queue
from tests.helpers import run_cli
from tests.pg import PG_URL, fresh_schema


def test_demo_runs_the_whole_pipeline_and_cleans_up(tmp_path: Path) -> None:
    result = run_cli("demo", "--users", "40", "--dir", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "demo in" in out and ": OK" in out
    for line in ("accounts_index: 40/40", "balance: 40/40", "local_key: 40/40",
                 "metadata: 40/40", "metadata_phone: 40/40"):
        assert line in out, out
    report = tmp_path / "demo" / "report.html"
    HTMLParser().feed(report.read_text())
    for stage in ("devnet", "generate", "import", "sync", "metadata", "verify"):  # timed
        assert re.search(rf"^-- {stage} done in \d+\.\d s$", result.stderr, re.M), result.stderr
    rows = re.findall(r'<tr class="stage" data-stage="([^"]+)" data-done="(\d+)"',
                      report.read_text())
    assert rows == [("import eth", "40"), ("sync eth", "40"), ("import cic_meta", "40"),
                    ("verify", "40")]  # the report's timeline
    info = json.loads((tmp_path / "demo" / "devnet" / "devnet.json").read_text())
    assert info["anvil"]["pid"] is None and info["meta"]["pid"] is None
    # a second run wipes and redoes its own directory; a foreign one is refused
    assert run_cli("demo", "--users", "5", "--no-meta", "--dir",
                   str(tmp_path / "demo")).returncode == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("keep me")
    refused = run_cli("demo", "--users", "5", "--dir", str(tmp_path / "mine"))
    assert refused.returncode == 2 and "was not made by `cic-seed demo`" in refused.stderr
    assert (tmp_path / "mine" / "precious.txt").read_text() == "keep me"


# --- demo --ussd and demo --keep --------------------------------------------------------------

def _kept(out: str) -> dict[str, list[int]]:
    """The services the demo says it left running: ``{name: [pid, ...]}`` from the lines
    under ``left running``."""
    listing = out[out.index("left running (--devnet "):].splitlines()[1:]
    found: dict[str, list[int]] = {}
    for line in listing:
        match = re.match(r"  (\S.*?)\s+pid (\d+)\s+\S", line)
        if match is None:
            break
        found.setdefault(match[1], []).append(int(match[2]))
    return found


def _alive(pid: int, marker: str) -> bool:
    """Process ``pid`` runs, and is the one named (``marker`` in its command line)."""
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and marker in " ".join(proc.cmdline())
    except psutil.Error:
        return False


def _ended(pid: int) -> bool:
    """Process ``pid`` is gone (or has exited and waits to be reaped by init)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


MARKERS = {"anvil": "anvil", "metadata server": "cic_devnet.meta",
           "custodial engine": "cic_devnet.custodial", "USSD gateway": "cic_devnet.ussd"}


@pytest.fixture
def kept_pids() -> Iterator[list[int]]:
    """Pids a kept demo left running; whatever still runs of them is stopped after the test
    (by pid, SIGKILL), whether ``devnet down`` ran or not."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            if any(m in " ".join(proc.cmdline()) for m in MARKERS.values()):
                proc.kill()


def _stop_and_check_stopped(devnet_dir: Path, pids: list[int]) -> None:
    down = run_cli("devnet", "down", "--devnet", str(devnet_dir))
    assert down.returncode == 0 and "devnet stopped" in down.stdout, down.stdout + down.stderr
    assert [p for p in pids if not _ended(p)] == []
    info = json.loads((devnet_dir / "devnet.json").read_text())
    assert info["anvil"]["pid"] is None and info["meta"]["pid"] is None
    assert all(w["pid"] is None for w in info["custodial"]["workers"])


def test_demo_ussd_registers_over_the_gateway_logs_in_and_keeps_every_service(
        tmp_path: Path, kept_pids: list[int]) -> None:
    """``demo --ussd --custodial --keep``: users register through the gateway's menus, their
    PINs are imported, they are synced and pass the USSD checks, one logs in with its PIN;
    anvil, the metadata server, the engine's worker and the gateway stay up, are listed, and
    ``devnet down`` stops them all."""
    work = tmp_path / "demo"
    with fresh_schema("cust") as cust, fresh_schema("ussd") as ussd:
        env = {"CIC_CUSTODIAL_DB_URL": PG_URL, "CIC_CUSTODIAL_DB_SCHEMA": cust,
               "CIC_CUSTODIAL_QUEUE": f"test_{ussd}", "CIC_USSD_DB_URL": PG_URL,
               "CIC_USSD_DB_SCHEMA": ussd}
        try:
            result = run_cli("demo", "--users", "4", "--custodial", "--custodial-users", "3",
                             "--ussd", "--ussd-users", "6", "--keep", "--workdir", str(work),
                             env=env)
            if "left running" in result.stdout:
                kept_pids.extend(p for ps in _kept(result.stdout).values() for p in ps)
            assert result.returncode == 0, result.stdout + result.stderr
            out = result.stdout
            part = out[out.index("USSD users in"):]
            for line in ("cic_ussd: 6 users imported", "ussd-pins: 6 users imported",
                         "sync cic_ussd: done: 6/6", "ussd: 6/6", "ussd_pins: 6/6",
                         "balance: 6/6", "custodial_key: 6/6", "metadata: 6/6",
                         "12 checks (cic_ussd import): all ok"):
                assert line in part, out
            assert (work / "report-ussd.html").is_file()
            assert "custodial_key: 3/3" in out[out.index("custodial users in"):], out
            _assert_login(work / "data-ussd", part)

            kept = _kept(out)
            assert sorted(kept) == sorted(MARKERS) and len(kept["custodial engine"]) == 1, out
            for name, pids in kept.items():
                assert all(_alive(p, MARKERS[name]) for p in pids), (name, pids)
            info = json.loads((work / "devnet" / "devnet.json").read_text())
            assert kept["USSD gateway"] == [info["ussd"]["pid"]]
            assert f"{info['ussd']['url']} (service code *483*46#)" in out
            assert f"stop them all with `cic-seed devnet down --devnet {work / 'devnet'}`" in out

            _stop_and_check_stopped(work / "devnet", kept_pids)
            assert json.loads((work / "devnet" / "devnet.json").read_text())["ussd"]["pid"] \
                is None
        finally:
            run_cli("devnet", "down", "--devnet", str(work / "devnet"))
            purge_queue(REDIS_URL, env["CIC_CUSTODIAL_QUEUE"])


def _assert_login(data_dir: Path, out: str) -> None:
    """The login shown is user 0's: the main menu in its language, the PIN masked, and the
    balance screen with its opening balance plus the faucet's payout."""
    data = DataDir(data_dir)
    seed = data.manifest().seed
    user = next(u for u in data.users() if u.index == 0)
    lang = preferred_language(seed, 0)
    opening = next(int(v) for a, v in csv.reader((data_dir / "balances.csv").open())
                   if a == user.address.lower().removeprefix("0x"))
    login = out[out.index(f"USSD login of {user.phone} at http://127.0.0.1:"):]
    menu = text("main", lang).splitlines()
    shown = "\n".join([
        "  > dial *483*46#", f"  CON {menu[0]}", *(f"      {line}" for line in menu[1:]),
        "  > 1", f"  CON {text('enter_pin', lang)}",
        "  > **** (the user's seeded PIN)",
        "  END " + text("balance", lang, amount=format_amount(opening + 5 * 10**6, 6),
                        symbol="GFT")])
    assert shown in login, login  # the PIN typed is shown masked, never in clear


def test_demo_keep_leaves_the_engine_without_postgresql_or_redis_running(
        tmp_path: Path, kept_pids: list[int]) -> None:
    """``demo --custodial --keep`` with neither PostgreSQL nor Redis configured: the engine
    runs as a process of its own on SQLite (its broker and replies files), outlives the demo,
    answers another process (the verifier's custodial_key), and ``devnet down`` stops it."""
    work = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIC_")}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "cic_seeding.cli.main", "demo", "--users", "4",
             "--custodial", "--custodial-users", "5", "--keep", "--workdir", str(work)],
            env=env, capture_output=True, text=True, timeout=300)
        if "left running" in result.stdout:
            kept_pids.extend(p for ps in _kept(result.stdout).values() for p in ps)
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout
        assert "engine a process of its own on SQLite, its broker files" in out, out
        kept = _kept(out)
        assert sorted(kept) == ["anvil", "custodial engine", "metadata server"], out
        for name, pids in kept.items():
            assert all(_alive(p, MARKERS[name]) for p in pids), (name, pids)
        spool = work / "devnet" / "custodial-spool"
        info = json.loads((work / "devnet" / "devnet.json").read_text())
        engine = info["custodial"]
        assert engine["broker_url"] == f"filesystem://localhost{spool}"
        assert engine["db_url"] == f"sqlite:///{work / 'devnet' / 'custodial.db'}"
        assert kept["custodial engine"] == [w["pid"] for w in engine["workers"]]
        assert f"on filesystem://localhost{spool}" in out

        # the kept engine answers a process that is not the demo's
        again = subprocess.run(
            [sys.executable, "-m", "cic_seeding.cli.main", "verify", "--devnet",
             str(work / "devnet"), "--include", "custodial_key", str(work / "data-custodial")],
            env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "custodial_key: 5/5" in again.stdout and "skipped" not in again.stdout

        _stop_and_check_stopped(work / "devnet", kept_pids)
    finally:
        subprocess.run([sys.executable, "-m", "cic_seeding.cli.main", "devnet", "down",
                        "--devnet", str(work / "devnet")], env=env, capture_output=True,
                       timeout=60)
