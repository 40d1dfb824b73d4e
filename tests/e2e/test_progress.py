"""Progress and the run's timeline, as a user sees them on a real devnet: a resumed import's bar
on a terminal counts from where the last run stopped up to the total, every command writes
lines when stderr is no terminal and nothing under -q, and the HTML report of verify shows the
stages of the run (import, import again, sync, traffic, verify) with their users per second."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

from cic_devnet.devnet import Devnet
from cic_seeding.generate.generator import GenerateOptions, generate
from tests.helpers import ROOT, run_cli

USERS, TRANSFERS = 30, 12


def on_a_terminal(*args: str, cwd: Path, timeout: float = 300) -> tuple[int, str, str]:
    """Run ``cic-seed ARGS`` with stderr on a pseudo-terminal: (exit code, stdout, what the
    terminal received)."""
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120", "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-m", "cic_seeding.cli.main", *args], cwd=cwd,
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=slave)
    os.close(slave)
    received = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], deadline - time.monotonic())
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the process closed its end
                break
            if not chunk:
                break
            received += chunk
        out = proc.stdout.read().decode() if proc.stdout else ""
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, out, received.decode(errors="replace")


def frames(terminal: str) -> list[str]:
    """What the terminal showed, one redraw of the bar (or one line) each."""
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", terminal)
    return [f.strip() for f in re.split(r"[\r\n]", plain) if f.strip()]


class Timeline(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []
        self.bars: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "tr" and a.get("class") == "stage":
            self.rows.append(a)
        elif tag == "rect" and "data-stage" in a:
            self.bars.append(a["data-stage"])


def test_progress_of_every_stage_and_the_timeline_in_the_report(devnet: Devnet,
                                                                tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate(GenerateOptions(directory=data, count=USERS, seed=2020, transactions=TRANSFERS))
    chain = ["--devnet", str(devnet.directory)]

    first = run_cli("import", "eth", str(data), *chain, "--limit", "10", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "import eth: 10/10 users; 10 this run in " in first.stderr  # no terminal: lines

    code, out, terminal = on_a_terminal("import", "eth", str(data), *chain, cwd=tmp_path)
    assert code == 0, out + terminal
    shown = [(int(d), int(t)) for d, t in re.findall(r"(\d+)/(\d+) users", terminal)]
    assert shown and all(total == USERS and done >= 10 for done, total in shown), shown
    last = frames(terminal)[-1]
    assert f"{USERS}/{USERS} users" in last and "users/s" in last and last.endswith("done")
    assert "20 users imported this run" in out and "10 before" in out

    sync = run_cli("sync", "eth", str(data), *chain, "--timeout", "120", cwd=tmp_path)
    assert sync.returncode == 0, sync.stdout + sync.stderr
    assert f"sync eth: {USERS}/{USERS} users; {USERS} this run in " in sync.stderr

    traffic = run_cli("traffic", "-q", str(data), *chain, cwd=tmp_path)
    assert traffic.returncode == 0, traffic.stdout + traffic.stderr
    assert traffic.stderr == "" and traffic.stdout == ""  # -q: nothing

    report = tmp_path / "report.html"
    verify = run_cli("verify", str(data), *chain, "--report", str(report), cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert f"verify: {USERS}/{USERS} users; {USERS} this run in " in verify.stderr

    html = Timeline()
    html.feed(report.read_text(encoding="utf-8"))
    assert [(r["data-stage"], r["data-done"], r["data-total"], r["data-result"])
            for r in html.rows] == [
        ("import eth", "10", "10", "ok"), ("import eth", "20", "30", "ok"),
        ("sync eth", "30", "30", "ok"), ("traffic", str(TRANSFERS), str(TRANSFERS), "ok"),
        ("verify", "30", "30", "ok")]
    assert all(float(r["data-rate"]) > 0 for r in html.rows)
    assert html.bars == ["import eth", "import eth", "sync eth", "traffic", "verify"]
