"""Fixtures: one state store per test, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cic_seeding.state import StateStore, open_state_store

PG_URL = os.environ.get("CIC_TEST_PG_URL",
                        "postgresql://postgres@127.0.0.1:5432/cic_seeding_test")


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh schema name, dropped after the test."""
    import psycopg2

    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    conn = psycopg2.connect(PG_URL)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str | None]]:
    """(url, schema) of an empty store of each backend."""
    if request.param == "sqlite":
        yield str(tmp_path / "state.db"), None
    else:
        yield PG_URL, request.getfixturevalue("pg_schema")


@pytest.fixture
def store(backend: tuple[str, str | None]) -> Iterator[StateStore]:
    url, schema = backend
    s = open_state_store(url=url, schema=schema)
    yield s
    s.close()
