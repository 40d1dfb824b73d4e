"""Running the ``eth/seed.py`` / ``eth/sync.py`` scripts (or ``cic-seed`` itself, :data:`CLI`)
as a user would, and killing them.

Each script runs in its own session (process group), so ``kill -9`` reaches the keyfile worker
processes too, and output goes to files (a full pipe can never stall a run). Waiting is on
observable conditions (the state store, files, exit) with a bounded deadline.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cic_devnet.devnet import Devnet

ROOT = Path(__file__).resolve().parents[2]
#: The ``script`` that runs ``cic-seed ARGS`` itself (the console entry point's module).
CLI = "cic-seed"
T = TypeVar("T")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any CIC_* variable of the host, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIC_")}
    env.update(extra)
    return env


@dataclass
class Script:
    """A running script; ``stdout``/``stderr`` are read from its output files."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path

    @property
    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> int:
        """SIGKILL the whole process group; returns the exit status (-9 if it was running)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.wait(10)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(f"{self.proc.args!r} did not finish within {timeout:.0f}s; "
                                 f"stdout: {self.stdout[-2000:]}\nstderr: {self.stderr[-2000:]}"
                                 ) from None

    def report(self) -> str:
        return f"exit {self.proc.returncode}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


_runs = 0


def start(script: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> Script:
    """Start ``ROOT/script ARGS`` (``cic-seed ARGS`` for :data:`CLI`) in ``cwd`` (no config
    file there) in a new session."""
    global _runs
    _runs += 1
    name = Path(script).stem
    out, err = cwd / f"{name}-{_runs}.out", cwd / f"{name}-{_runs}.err"
    command = ([sys.executable, "-m", "cic_seeding.cli.main"] if script == CLI
               else [sys.executable, str(ROOT / script)])
    with open(out, "wb") as fo, open(err, "wb") as fe:
        proc = subprocess.Popen([*command, *args], cwd=cwd,
                                env=env or clean_env(), stdin=subprocess.DEVNULL, stdout=fo,
                                stderr=fe, start_new_session=True)
    return Script(proc, out, err)


@contextlib.contextmanager
def running(script: str, *args: str, cwd: Path, env: dict[str, str] | None = None
            ) -> Iterator[Script]:
    """:func:`start`, and kill the process group on the way out whatever happened."""
    run = start(script, *args, cwd=cwd, env=env)
    try:
        yield run
    finally:
        if run.alive():
            run.kill9()


def seed_args(data: Path, devnet: Devnet, *extra: str) -> list[str]:
    return ["--dir", str(data), "--devnet", str(devnet.directory), *extra]


def wait_for(condition: Callable[[], T], *, timeout: float, what: str,
             while_alive: Script | None = None) -> T:
    """Poll ``condition`` until it returns something truthy; AssertionError after ``timeout``
    or when ``while_alive`` exits first (the condition can then never come true)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if while_alive is not None and not while_alive.alive():
            raise AssertionError(f"the run ended before {what}: {while_alive.report()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f}s")
        time.sleep(0.002)  # polling interval of an observable condition, bounded by deadline


def db_count(data: Path, sql: str) -> int:
    """A count from the data directory's state store (0 while it does not exist yet)."""
    path = data / "state.db"
    if not path.exists():
        return 0
    try:
        conn = sqlite3.connect(path, timeout=5)
        try:
            return int(conn.execute(sql).fetchone()[0])
        finally:
            conn.close()
    except sqlite3.OperationalError:  # no tables yet
        return 0


def db_rows(data: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(data / "state.db", timeout=5)
    try:
        return list(conn.execute(sql).fetchall())
    finally:
        conn.close()


def users_in(data: Path, *statuses: str) -> int:
    marks = ", ".join(f"'{s}'" for s in statuses)
    return db_count(data, f"SELECT count(*) FROM users WHERE importer = 'eth' "
                          f"AND status IN ({marks})")


def payments_in(data: Path, *statuses: str) -> int:
    marks = ", ".join(f"'{s}'" for s in statuses)
    return db_count(data, f"SELECT count(*) FROM payments WHERE importer = 'eth' "
                          f"AND status IN ({marks})")


def files_in(directory: Path) -> int:
    if not directory.is_dir():
        return 0
    return sum(1 for _, _, files in os.walk(directory) for f in files if not f.startswith("."))


def kill_points(rng: random.Random, total: int, count: int, gap: int) -> list[int]:
    """``count`` increasing thresholds in ``[gap, total - 2 gap)``, at least ``gap`` apart
    (the last run killed still has work left when the kill lands)."""
    while True:
        points = sorted(rng.sample(range(gap, total - 2 * gap), count))
        if all(b - a >= gap for a, b in zip(points, points[1:], strict=False)):
            return points
