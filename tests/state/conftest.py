"""Fixtures: one state store per test, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cic_seeding.state import StateStore, open_state_store
from tests.pg import PG_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str | None]]:
    """(url, schema) of an empty store of each backend (a fresh schema: tests/conftest.py)."""
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
