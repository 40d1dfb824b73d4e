"""Fixtures: the custodial engine against the real PostgreSQL, Redis and anvil.

Every engine gets its own PostgreSQL schema (``pg_schema`` of tests/conftest.py, dropped after)
and its own Celery queue and reply channels on Redis, so these tests run beside any others;
every process started here is stopped by pid afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cic_devnet.devnet import Devnet
from tests.custodial.world import Harness


@pytest.fixture
def harness(devnet: Devnet, tmp_path: Path, pg_schema: str) -> Iterator[Harness]:
    """An engine prepared on a fresh devnet (no worker started yet: ``harness.start()``)."""
    h = Harness.prepare(devnet, tmp_path, pg_schema)
    try:
        yield h
    finally:
        h.stop()


@pytest.fixture(scope="module")
def module_harness(module_devnet: Devnet, tmp_path_factory: pytest.TempPathFactory,
                   module_pg_schema: str) -> Iterator[Harness]:
    """One prepared engine on the module's devnet, for tests of the plain functions."""
    h = Harness.prepare(module_devnet, tmp_path_factory.mktemp("engine"), module_pg_schema)
    try:
        yield h
    finally:
        h.stop()


@pytest.fixture
def no_postgresql_no_redis(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Any connection to PostgreSQL or Redis from this process fails (and is recorded)."""
    import psycopg2
    import redis.connection

    touched: list[str] = []

    def refuse(what: str) -> Any:
        def connect(*args: Any, **kwargs: Any) -> Any:
            touched.append(what)
            raise AssertionError(f"a pipeline that needs neither connected to {what}")
        return connect

    monkeypatch.setattr(psycopg2, "connect", refuse("PostgreSQL"))
    monkeypatch.setattr(redis.connection.AbstractConnection, "connect", refuse("Redis"))
    return touched
