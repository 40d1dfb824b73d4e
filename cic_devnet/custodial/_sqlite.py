"""The engine's storage in one SQLite file, for an engine embedded in one process.

The engine's SQL is written in PostgreSQL's words; :func:`translate` says the same in SQLite's:
``?`` placeholders, ``MAX`` for ``GREATEST``, and no row locks (``FOR UPDATE [SKIP LOCKED]``
dropped). Row locks are not needed because every transaction starts with ``BEGIN IMMEDIATE``,
which takes the database's write lock up front: writers are serialised, so the nonce counter's
``UPDATE ... RETURNING`` and the insert of the signed transaction stay one atomic step, and a
dispatcher or tracker sees no row another one is working on. Readers wait too; an embedded
engine is small, and correctness is worth more there than parallel reads.

Column types PostgreSQL has and SQLite lacks: ``BYTEA`` is ``BLOB``; ``NUMERIC(78)`` (wei) is
``TEXT`` (SQLite integers stop at 2^63); ``TEXT[]`` is JSON text; ``BIGSERIAL`` is an
``INTEGER PRIMARY KEY AUTOINCREMENT``. Parameters are converted to match (:func:`param`).
"""

from __future__ import annotations

import functools
import json
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cic_seeding.errors import CustodialError, CustodialUnavailableError

from .storage import SCHEMA, SQLITE_PREFIX, Storage

#: Seconds a transaction waits for the write lock before it gives up (transient).
BUSY_TIMEOUT = 60.0

_FOR_UPDATE = re.compile(r"\s+FOR UPDATE(\s+SKIP LOCKED)?\b")
_TYPES = (("BIGSERIAL PRIMARY KEY", "INTEGER PRIMARY KEY AUTOINCREMENT"), ("BYTEA", "BLOB"),
          ("NUMERIC(78)", "TEXT"), ("TEXT[] NOT NULL DEFAULT '{}'", "TEXT NOT NULL DEFAULT '[]'"))
_INT64 = 2**63


@functools.lru_cache(maxsize=256)
def translate(query: str) -> str:
    """``query`` (PostgreSQL, psycopg2 placeholders) as SQLite runs it."""
    query = _FOR_UPDATE.sub("", query).replace("GREATEST(", "MAX(")
    return query.replace("%s", "?").replace("%%", "%")


def translate_ddl(statement: str) -> str:
    for pg, sqlite in _TYPES:
        statement = statement.replace(pg, sqlite)
    return statement


def param(value: Any) -> Any:
    """A parameter as SQLite stores it: lists as JSON text, integers past 64 bits as text."""
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value))
    if isinstance(value, int) and not isinstance(value, bool) and not -_INT64 <= value < _INT64:
        return str(value)
    return value


class Cursor:
    """A sqlite3 cursor that takes the engine's (PostgreSQL) SQL."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cur = cursor

    def execute(self, query: str, params: Sequence[Any] = ()) -> None:
        self._cur.execute(translate(query), [param(p) for p in params])

    def executemany(self, query: str, rows: Iterable[Sequence[Any]]) -> None:
        self._cur.executemany(translate(query), [[param(p) for p in r] for r in rows])

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall()

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    @property
    def description(self) -> Any:
        return self._cur.description

    def close(self) -> None:
        self._cur.close()


def sqlite_path(url: str) -> Path:
    """The file a ``sqlite:///PATH`` URL names."""
    path = url[len(SQLITE_PREFIX):]
    if not path:
        raise CustodialError(f"the custodial database URL {url!r} names no file",
                             hint="write sqlite:///relative/path or sqlite:////absolute/path")
    return Path(path)


class SqliteStorage(Storage):
    """The engine's database in one SQLite file (WAL); writers are serialised."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self.schema = None
        self.path = sqlite_path(url)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        if not self.path.exists() and self.path.parent.is_dir():
            # sealed keys live here: readable by the owner only, from the first byte
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self.connection()  # fail now, with a clear message, rather than on the first task
        if create:
            self.create_schema()

    def describe(self) -> str:
        return str(self.path)

    def connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise CustodialError(f"cannot open the custodial database {self.path}: {exc}",
                                 hint="check that its directory exists and is writable "
                                 "(custodial_db_url sqlite:///PATH)") from None
        self._local.conn = conn
        with self._lock:
            self._all.append(conn)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A cursor inside one transaction holding the write lock (``BEGIN IMMEDIATE``);
        inside another transaction of this thread, a cursor of that one."""
        conn = self.connection()
        if conn.in_transaction:
            cur = Cursor(conn.cursor())
            try:
                yield cur
            finally:
                cur.close()
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
            cur = Cursor(conn.cursor())
            try:
                yield cur
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                cur.close()
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise CustodialUnavailableError(
                    f"custodial database {self.path}: {exc} (waited {BUSY_TIMEOUT:.0f}s for "
                    "the write lock)") from exc
            raise CustodialError(f"custodial database {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise CustodialError(f"custodial database {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._local = threading.local()

    def create_schema(self) -> None:
        with self.transaction() as cur:
            for statement in SCHEMA:
                cur.execute(translate_ddl(statement))
