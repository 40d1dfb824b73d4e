"""Fixtures: the metadata server as a real process, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cic_devnet.meta.process import MetaServerProcess, start_meta_server

PG_URL = os.environ.get("CIC_TEST_PG_URL",
                        "postgresql://postgres@127.0.0.1:5432/cic_seeding_test")


def drop_schema(name: str) -> None:
    import psycopg2

    conn = psycopg2.connect(PG_URL)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        conn.close()


def _store(kind: str, directory: Path) -> Iterator[tuple[str, str | None]]:
    """(db, schema) of an empty store of ``kind``; a PostgreSQL schema is dropped after."""
    if kind == "sqlite":
        yield str(directory / "meta.db"), None
        return
    schema = f"meta_{uuid.uuid4().hex[:12]}"
    try:
        yield PG_URL, schema
    finally:
        drop_schema(schema)


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
