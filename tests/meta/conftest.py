"""Fixtures: the metadata server as a real process, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cic_devnet.meta.process import MetaServerProcess, start_meta_server
from tests.pg import PG_URL, fresh_schema


def _store(kind: str, directory: Path) -> Iterator[tuple[str, str | None]]:
    """(db, schema) of an empty store of ``kind``; a PostgreSQL schema is dropped after."""
    if kind == "sqlite":
        yield str(directory / "meta.db"), None
        return
    with fresh_schema("meta") as schema:
        yield PG_URL, schema


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def meta_server(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetaServerProcess]:
    """One server per backend, shared by a module's tests (they use distinct pointers)."""
    for db, schema in _store(request.param, tmp_path_factory.mktemp("meta")):
        server = start_meta_server(db=db, schema=schema)
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def meta_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str | None]]:
    """(db, schema) of a fresh store, for tests that start and stop servers themselves."""
    yield from _store(request.param, tmp_path)


@pytest.fixture
def fresh_server(meta_store: tuple[str, str | None]) -> Iterator[MetaServerProcess]:
    db, schema = meta_store
    server = start_meta_server(db=db, schema=schema)
    try:
        yield server
    finally:
        server.stop()
