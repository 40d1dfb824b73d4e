"""The services the tests need, brought up at session start: PostgreSQL and Redis on
127.0.0.1 and the test database ``cic_seeding_test``.

When one of them is missing, the session runs ``scripts/services.sh`` (the commands this kind
of machine documents for starting them, and ``CREATE DATABASE``), so the README's test command
alone works after ``scripts/setup.sh``. When everything answers it costs two connects and one
login. A ``CIC_TEST_PG_URL`` naming another server is used as it is: nothing is started for it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.helpers import ROOT
from tests.pg import PG_URL

SCRIPT = ROOT / "scripts" / "services.sh"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/cic_seeding_test"
PG = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)


def listening(address: tuple[str, int], timeout: float = 1.0) -> bool:
    """True if something accepts a TCP connection at ``address``."""
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


def database_answers(url: str) -> bool:
    """True if a login to ``url`` (its database included) succeeds."""
    import psycopg2

    try:
        psycopg2.connect(url, connect_timeout=3).close()
    except psycopg2.Error:
        return False
    return True


def missing(database_url: str | None = DEFAULT_PG_URL, pg: tuple[str, int] = PG,
            redis: tuple[str, int] = REDIS) -> list[str]:
    """What of the tests' services does not answer (empty: all do). ``database_url`` None:
    PostgreSQL is somebody else's, not checked."""
    out = []
    if database_url is not None:
        if not listening(pg):
            out.append(f"PostgreSQL on {pg[0]}:{pg[1]}")
        elif not database_answers(database_url):
            out.append(f"the database {database_url.rsplit('/', 1)[1]}")
    if not listening(redis):
        out.append(f"Redis on {redis[0]}:{redis[1]}")
    return out


def _ours() -> list[str]:
    """What is missing of the services the default settings use (a ``CIC_TEST_PG_URL`` naming
    another server is the caller's to run)."""
    return missing(PG_URL if PG_URL == DEFAULT_PG_URL else None)


def ensure_services(script: Path = SCRIPT, *, check: Callable[[], list[str]] = _ours,
                    env: dict[str, str] | None = None, timeout: float = 120) -> list[str]:
    """Run ``script`` if ``check()`` finds something missing; returns what was missing. When
    the script cannot bring it up, says so on stderr and lets the session go on: the tests that
    need the service fail with their own errors, the others run."""
    absent = check()
    if not absent:
        return []
    print(f"\nstarting the test services ({', '.join(absent)} not reachable): bash {script}",
          file=sys.stderr)
    try:
        done = subprocess.run(["bash", str(script)], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, check=False,
                              env={**os.environ, **(env or {})})
        output = (done.stdout + done.stderr).strip()
        failed = done.returncode != 0
    except (OSError, subprocess.TimeoutExpired) as exc:
        output, failed = str(exc), True
    still = check()
    if failed or still:
        print(f"the test services are not all up ({', '.join(still) or 'script failed'}): "
              f"{output[-2000:]}", file=sys.stderr)
    return absent
