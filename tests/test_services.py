"""The test session brings up its own services (tests/services.py, scripts/services.sh).

The real script runs here against a Redis of our own on a free port and a database nobody
uses, so the shared PostgreSQL and Redis are never stopped or changed: the PostgreSQL start
is the one line of the script this cannot exercise.
"""

from __future__ import annotations

import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.services import DEFAULT_PG_URL, SCRIPT, ensure_services, listening, missing


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_nothing_runs_when_everything_answers(tmp_path: Path) -> None:
    script = tmp_path / "services.sh"
    script.write_text(f"touch {tmp_path / 'ran'}\n")
    assert ensure_services(script, check=list) == []
    assert not (tmp_path / "ran").exists()


def test_the_script_runs_when_something_is_missing(tmp_path: Path,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "services.sh"
    script.write_text(f"touch {tmp_path / 'ran'}\n")
    answers = iter([["Redis on 127.0.0.1:1"], []])
    assert ensure_services(script, check=lambda: next(answers)) == ["Redis on 127.0.0.1:1"]
    assert (tmp_path / "ran").exists()
    assert "Redis on 127.0.0.1:1 not reachable" in capfd.readouterr().err


def test_a_script_that_cannot_help_is_reported_not_raised(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "services.sh"
    script.write_text("echo 'no redis-server here' >&2; exit 1\n")
    assert ensure_services(script, check=lambda: ["Redis on 127.0.0.1:1"]) != []
    assert "no redis-server here" in capfd.readouterr().err


def test_missing_names_closed_ports() -> None:
    closed = ("127.0.0.1", _free_port())
    assert missing(DEFAULT_PG_URL, pg=closed, redis=closed) == [
        f"PostgreSQL on 127.0.0.1:{closed[1]}", f"Redis on 127.0.0.1:{closed[1]}"]
    assert missing(None, pg=closed, redis=closed) == [f"Redis on 127.0.0.1:{closed[1]}"]


def test_the_real_script_starts_redis_and_creates_the_database(tmp_path: Path) -> None:
    port = _free_port()
    db = f"t_services_{uuid.uuid4().hex[:10]}"
    url = f"postgresql://postgres@127.0.0.1:5432/{db}"
    env = {"CIC_SERVICES_REDIS_PORT": str(port), "CIC_SERVICES_REDIS_DIR": str(tmp_path),
           "CIC_SERVICES_REDIS_LOG": str(tmp_path / "redis.log"), "CIC_SERVICES_DATABASES": db}
    assert missing(url, redis=("127.0.0.1", port)) == [f"the database {db}",
                                                       f"Redis on 127.0.0.1:{port}"]
    try:
        absent = ensure_services(SCRIPT, check=lambda: missing(url, redis=("127.0.0.1", port)),
                                 env=env)
        assert len(absent) == 2
        assert missing(url, redis=("127.0.0.1", port)) == []
        assert listening(("127.0.0.1", port))
        # a second run finds everything up and changes nothing
        assert ensure_services(SCRIPT, check=lambda: missing(url, redis=("127.0.0.1", port)),
                               env=env) == []
    finally:
        subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "shutdown", "nosave"],
                       capture_output=True, timeout=30, check=False)
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-c",
                        f"DROP DATABASE IF EXISTS {db}"], capture_output=True, timeout=30,
                       check=False)
