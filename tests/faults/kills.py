"""Seeded kill points and the kill -9 / rerun loop the fault tests share.

A kill point is a threshold on something a run makes observable as it goes (rows of the state
store, files, documents on a server): the run is killed with SIGKILL, its whole process group,
once the count reaches the threshold. Thresholds come from a seeded RNG, so a failing sweep is
reproduced with the same ``CIC_TEST_FAULT_SEED`` and ``CIC_FAULT_POINTS``.
"""

from __future__ import annotations

import os
import random
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cic_devnet.meta.process import MetaServerProcess
from tests.e2e.procs import Script, db_count, running, wait_for

#: Seed of every kill point; override to explore other points.
FAULT_SEED = int(os.environ.get("CIC_TEST_FAULT_SEED", "4"))
#: Kill points per importer: a short sample by default (CI), 20 or more for the full sweep.
FAULT_POINTS = max(1, int(os.environ.get("CIC_FAULT_POINTS", "3")))
SIGKILLED = -9


def kill_points(rng: random.Random, start: int, stop: int, count: int) -> list[int]:
    """``count`` increasing random thresholds in ``[start, stop)``, spread at least
    ``(stop - start) // (2 count)`` apart, so each run killed has made progress first."""
    span = stop - start
    gap = max(1, span // (2 * count))
    free = span - (count - 1) * gap
    if free < count:
        raise ValueError(f"{count} kill points do not fit in [{start}, {stop})")
    picks = sorted(rng.sample(range(free), count))
    return [start + p + i * gap for i, p in enumerate(picks)]


@dataclass(frozen=True)
class Probe:
    """Something a run makes observable: ``count()`` grows as the run goes."""

    what: str
    count: Callable[[], int]


@dataclass(frozen=True)
class KillPoint:
    probe: Probe
    at: int

    def __str__(self) -> str:
        return f"{self.at} {self.probe.what}"


def plan(rng: random.Random, probes: Sequence[Probe], start: int, stop: int,
         count: int = FAULT_POINTS) -> list[KillPoint]:
    """``count`` kill points over ``[start, stop)``, each on a probe picked at random."""
    return [KillPoint(rng.choice(probes), at) for at in kill_points(rng, start, stop, count)]


@dataclass
class Tally:
    """Faults injected into one importer and the runs it took; the session report reads it."""

    importer: str
    fault: str = "kill -9"
    faults: int = 0
    runs: int = 0
    users: int = 0
    users_lost: int = 0
    double_payments: int = 0
    #: kills whose point the count had passed before the rerun began: they land in start-up
    at_startup: int = 0
    points: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return {"importer": self.importer, "fault": self.fault, "faults": self.faults,
                "runs": self.runs, "users": self.users, "users_lost": self.users_lost,
                "double_payments": self.double_payments, "at_startup": self.at_startup,
                "seed": FAULT_SEED, "points": self.points}


def kill_at(script: str, args: Sequence[str], points: Sequence[KillPoint], *, cwd: Path,
            env: dict[str, str], tally: Tally, timeout: float = 120) -> None:
    """Run ``script`` once per point and SIGKILL it there; each next run is the rerun of the
    one killed before it."""
    for point in points:
        passed = point.probe.count() >= point.at  # then the kill lands while it starts up
        with running(script, *args, cwd=cwd, env=env) as run:
            tally.runs += 1
            wait_for(lambda p=point: p.probe.count() >= p.at,  # type: ignore[misc]
                     timeout=timeout, while_alive=run,
                     what=f"{point} (fault seed {FAULT_SEED}, {script})")
            assert run.kill9() == SIGKILLED, f"{script} finished before the kill at {point}"
        tally.faults += 1
        tally.at_startup += passed
        tally.points.append(f"{point} (start-up)" if passed else str(point))


def run_to_end(script: str, args: Sequence[str], *, cwd: Path, env: dict[str, str],
               tally: Tally, timeout: float = 180) -> Script:
    """The last rerun: it must finish with exit 0."""
    with running(script, *args, cwd=cwd, env=env) as run:
        tally.runs += 1
        assert run.wait(timeout) == 0, run.report()
    assert "Traceback" not in run.stderr, run.report()
    return run


# --- observables -------------------------------------------------------------------------------


def state_count(data: Path, importer: str, *statuses: str) -> int:
    """Users of ``importer`` in ``statuses`` in the data directory's SQLite state store."""
    marks = ", ".join(f"'{s}'" for s in statuses)
    return db_count(data, f"SELECT count(*) FROM users WHERE importer = '{importer}' "
                          f"AND status IN ({marks})")


def payment_count(data: Path, importer: str, *statuses: str, kind: str | None = None) -> int:
    """Payments of ``importer`` (of ``kind``, or any) in ``statuses`` in the state store."""
    marks = ", ".join(f"'{s}'" for s in statuses)
    of_kind = f" AND kind = '{kind}'" if kind is not None else ""
    return db_count(data, f"SELECT count(*) FROM payments WHERE importer = '{importer}' "
                          f"AND status IN ({marks}){of_kind}")


def versions(server: MetaServerProcess) -> dict[str, int]:
    """pointer -> version of every document a metadata server holds (its SQLite store)."""
    conn = sqlite3.connect(server.db, timeout=5)
    try:
        return dict(conn.execute("SELECT pointer, version FROM meta_documents").fetchall())
    except sqlite3.OperationalError:  # no table yet
        return {}
    finally:
        conn.close()
