"""The PostgreSQL state store, selected by ``state_url = postgresql://...``.

The schema is created on first use. Bulk inserts go through ``execute_values`` and bulk updates
through ``execute_batch``: 100,000 users take seconds, not minutes.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cic_seeding.errors import StateError
from cic_seeding.state._sql import SqlStateStore

_VALUES = re.compile(r"VALUES \((\?(?:, \?)*)\)")
_PAGE = 1000


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":****@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


class PostgresStateStore(SqlStateStore):
    """State in PostgreSQL; ``schema`` (created if missing) keeps several stores apart."""

    def __init__(self, url: str, *, schema: str | None = None) -> None:
        super().__init__()
        import psycopg2
        import psycopg2.extras

        self._pg = psycopg2
        self._extras = psycopg2.extras
        self.url = url
        self.schema = schema
        self._statements: dict[str, str] = {}
        try:
            self._conn = psycopg2.connect(url)
            self._conn.autocommit = True  # transactions are explicit: BEGIN ... COMMIT
            if schema is not None:
                from psycopg2 import sql

                with self._conn.cursor() as cur:
                    cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                        sql.Identifier(schema)))
                    cur.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            self._cur = self._conn.cursor()
            self._create_schema("BIGSERIAL")
        except psycopg2.Error as exc:
            raise StateError(f"cannot open the state store {redact_url(url)}: "
                             f"{str(exc).strip()}",
                             hint="check CIC_STATE_URL and that PostgreSQL is running") from None

    def describe(self) -> str:
        where = redact_url(self.url)
        return f"{where} (schema {self.schema})" if self.schema else where

    def close(self) -> None:
        self._conn.close()

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("?", "%s")

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        try:
            self._cur.execute(self._sql(sql), tuple(params))
        except self._pg.Error as exc:
            raise StateError(f"state store {self.describe()}: {str(exc).strip()}") from exc
        return self._cur

    def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        try:
            if sql.startswith("INSERT") and _VALUES.search(sql):
                self._extras.execute_values(self._cur, self._sql(_VALUES.sub("VALUES %s", sql)),
                                            rows, page_size=_PAGE)
            else:
                name = self._prepared(sql)
                marks = ", ".join(["%s"] * len(rows[0]))
                self._extras.execute_batch(self._cur, f"EXECUTE {name} ({marks})", rows,
                                           page_size=_PAGE)
        except self._pg.Error as exc:
            raise StateError(f"state store {self.describe()}: {str(exc).strip()}") from exc

    def _prepared(self, sql: str) -> str:
        """A server-side prepared statement for ``sql`` (bulk updates run ~2x faster)."""
        name = self._statements.get(sql)
        if name is None:
            name = f"cic_stmt_{len(self._statements)}"
            counter = iter(range(1, sql.count("?") + 1))
            numbered = re.sub(r"\?", lambda _: f"${next(counter)}", sql)
            self._cur.execute(f"PREPARE {name} AS {numbered}")
            self._statements[sql] = name
        return name

    def _begin(self) -> None:
        self._execute("BEGIN")

    def _commit(self) -> None:
        self._execute("COMMIT")

    def _rollback(self) -> None:
        if not self._conn.closed:
            with contextlib.suppress(self._pg.Error):  # a lost connection has nothing to undo
                self._cur.execute("ROLLBACK")

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        digest = hashlib.sha256(f"cic-seeding:{self.schema}:{name}".encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        with self._lock:
            got = self._execute("SELECT pg_try_advisory_lock(?)", (key,)).fetchone()[0]
        if not got:
            raise StateError(f"{name!r} is already running against {self.describe()}",
                             hint="wait for it to finish or stop it, then run again")
        try:
            yield
        finally:
            with self._lock:
                if not self._conn.closed:
                    self._execute("SELECT pg_advisory_unlock(?)", (key,))
