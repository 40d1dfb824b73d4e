"""The PostgreSQL the tests share: its URL, fresh schemas, and queries in one.

Every test that writes to PostgreSQL does it in a schema of its own, made fresh (a name nobody
used) and dropped afterwards, so any number of tests run beside each other on one server. The
fixtures ``pg_schema`` (one test) and ``module_pg_schema`` (one module) in ``tests/conftest.py``
are :func:`fresh_schema`; code that needs several schemas (the USSD stack) uses it directly.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

PG_URL = os.environ.get("CIC_TEST_PG_URL",
                        "postgresql://postgres@127.0.0.1:5432/cic_seeding_test")


def schema_name(prefix: str = "t") -> str:
    """A schema name nobody used: ``PREFIX_`` and 12 hex digits (a lower-case identifier)."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def drop_schema(name: str) -> None:
    """Drop schema ``name`` with everything in it (nothing if it does not exist)."""
    import psycopg2

    conn = psycopg2.connect(PG_URL)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        conn.close()


@contextmanager
def fresh_schema(prefix: str = "t") -> Iterator[str]:
    """The name of a schema nobody used (whoever uses it first creates it), dropped after."""
    name = schema_name(prefix)
    try:
        yield name
    finally:
        drop_schema(name)


def sql_in(schema: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of ``query`` run in schema ``schema`` (committed)."""
    import psycopg2

    conn = psycopg2.connect(PG_URL)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(f'SET search_path TO "{schema}"')
            cur.execute(query, params)
            return list(cur.fetchall()) if cur.description else []
    finally:
        conn.close()
