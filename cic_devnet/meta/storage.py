"""Document storage of the metadata server: PostgreSQL, or a SQLite file when run embedded.

A document is kept as canonical JSON text with its ETag (sha256 of that text). A write whose
ETag equals the stored one changes nothing: no row is touched, ``version`` stays put.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

CREATED = "created"
UPDATED = "updated"
UNCHANGED = "unchanged"
CONFLICT = "conflict"


@dataclass(frozen=True)
class Stored:
    """One stored document: canonical JSON text, its ETag, and how often it changed."""

    body: str
    etag: str
    version: int


class Storage(Protocol):
    """What the app needs from a store. Methods are blocking and thread-safe."""

    def get(self, pointer: str) -> Stored | None: ...

    def put(self, pointer: str, body: str, etag: str, *, create_only: bool) -> tuple[str, int]:
        """Store ``body``; returns (CREATED | UPDATED | UNCHANGED | CONFLICT, version).

        ``create_only``: an existing, different document is a CONFLICT and is left alone.
        """
        ...

    def put_many(self, items: Sequence[tuple[str, str, str]]) -> list[tuple[str, int]]:
        """Store every ``(pointer, body, etag)`` in one transaction, in order, as :meth:`put`
        with ``create_only`` false would one by one; returns each one's (outcome, version)."""
        ...

    def close(self) -> None: ...

    def describe(self) -> str: ...


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return urlunsplit(parts._replace(netloc=parts.netloc.replace(
            f":{parts.password}@", ":****@")))
    return url


def is_postgres_url(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


def open_storage(db: str, *, schema: str | None = None) -> Storage:
    """``postgresql://...`` selects PostgreSQL (tables in ``schema``); else a SQLite path."""
    if is_postgres_url(db):
        return PostgresStorage(db, schema=schema)
    path = db[len("sqlite:///"):] if db.startswith("sqlite:///") else db
    return SqliteStorage(path)


class SqliteStorage:
    """One SQLite file; a lock serialises writers (the embedded case is small). A batch is one
    transaction: one commit for all its documents."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS meta_documents ("
            " pointer TEXT PRIMARY KEY, body TEXT NOT NULL, etag TEXT NOT NULL,"
            " version INTEGER NOT NULL DEFAULT 1)")

    def describe(self) -> str:
        return f"sqlite {self.path}"

    def get(self, pointer: str) -> Stored | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT body, etag, version FROM meta_documents WHERE pointer = ?",
                (pointer,)).fetchone()
        return Stored(*row) if row else None

    def put(self, pointer: str, body: str, etag: str, *, create_only: bool) -> tuple[str, int]:
        with self._lock:
            return self._transaction([(pointer, body, etag)], create_only)[0]

    def put_many(self, items: Sequence[tuple[str, str, str]]) -> list[tuple[str, int]]:
        with self._lock:
            return self._transaction(items, False)

    def _transaction(self, items: Sequence[tuple[str, str, str]],
                     create_only: bool) -> list[tuple[str, int]]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            outcomes = [self._put_one(*item, create_only) for item in items]
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        return outcomes

    def _put_one(self, pointer: str, body: str, etag: str, create_only: bool) -> tuple[str, int]:
        row = self._conn.execute(
            "SELECT etag, version FROM meta_documents WHERE pointer = ?", (pointer,)).fetchone()
        if row is None:
            self._conn.execute(
                "INSERT INTO meta_documents (pointer, body, etag) VALUES (?, ?, ?)",
                (pointer, body, etag))
            return CREATED, 1
        if row[0] == etag:
            return UNCHANGED, row[1]
        if create_only:
            return CONFLICT, row[1]
        self._conn.execute(
            "UPDATE meta_documents SET body = ?, etag = ?, version = version + 1"
            " WHERE pointer = ?", (body, etag, pointer))
        return UPDATED, row[1] + 1

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PostgresStorage:
    """PostgreSQL through a thread-safe connection pool; one statement per write (a batch: one
    statement and one commit for all its documents)."""

    def __init__(self, url: str, *, schema: str | None = None, max_connections: int = 16) -> None:
        import psycopg2
        from psycopg2 import sql

        self._connect_pg = psycopg2.connect
        self.url = url
        self.schema = schema
        self._options = {} if schema is None else {"options": f"-c search_path={schema}"}
        # A lazy pool: idle connections are reused, at most max_connections exist at once
        # (the request thread pool is larger, so callers wait on the semaphore).
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(max_connections)
        if schema is not None:
            with self._cursor(search_path=False) as cur:
                cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                    sql.Identifier(schema)))
            self._drain()
        with self._cursor() as cur:
            cur.execute(
                "CREATE TABLE IF NOT EXISTS meta_documents ("
                " pointer TEXT PRIMARY KEY, body TEXT NOT NULL, etag TEXT NOT NULL,"
                " version INTEGER NOT NULL DEFAULT 1)")

    def describe(self) -> str:
        where = redact_url(self.url)
        return f"postgresql {where}" + (f" (schema {self.schema})" if self.schema else "")

    @contextmanager
    def _cursor(self, *, search_path: bool = True) -> Iterator[Any]:
        # Autocommit: every statement used here is atomic on its own, and this saves the
        # BEGIN and COMMIT round trips per request.
        with self._slots:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._connect_pg(self.url, **(self._options if search_path else {}))
                conn.autocommit = True
            try:
                with conn.cursor() as cur:
                    yield cur
            except Exception:
                conn.close()  # its state is unknown after an error: do not reuse it
                raise
            else:
                self._idle.put(conn)

    def _drain(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return

    def get(self, pointer: str) -> Stored | None:
        with self._cursor() as cur:
            cur.execute("SELECT body, etag, version FROM meta_documents WHERE pointer = %s",
                        (pointer,))
            row = cur.fetchone()
        return Stored(*row) if row else None

    def put(self, pointer: str, body: str, etag: str, *, create_only: bool) -> tuple[str, int]:
        with self._cursor() as cur:
            return self._upsert(cur, pointer, body, etag, create_only)

    def put_many(self, items: Sequence[tuple[str, str, str]]) -> list[tuple[str, int]]:
        if not items:
            return []
        with self._cursor() as cur:
            # One transaction, one commit: a failure rolls it back (the connection is
            # dropped), so a batch is stored whole or not at all.
            cur.execute("BEGIN")
            if len({pointer for pointer, _, _ in items}) == len(items):
                outcomes = self._upsert_all(cur, items)
            else:  # a pointer twice: one by one, in order, as separate PUTs would
                outcomes = [self._upsert(cur, *item, False) for item in items]
            cur.execute("COMMIT")
        return outcomes

    @staticmethod
    def _upsert(cur: Any, pointer: str, body: str, etag: str,
                create_only: bool) -> tuple[str, int]:
        # Insert, or update only when the document differs (and updates are allowed);
        # xmax = 0 tells a fresh insert from an update.
        cur.execute(
            "INSERT INTO meta_documents AS d (pointer, body, etag) VALUES (%s, %s, %s)"
            " ON CONFLICT (pointer) DO UPDATE"
            " SET body = EXCLUDED.body, etag = EXCLUDED.etag, version = d.version + 1"
            " WHERE d.etag <> EXCLUDED.etag AND NOT %s"
            " RETURNING version, (xmax = 0)",
            (pointer, body, etag, create_only))
        row = cur.fetchone()
        if row is not None:
            return (CREATED if row[1] else UPDATED), row[0]
        cur.execute("SELECT etag, version FROM meta_documents WHERE pointer = %s", (pointer,))
        current = cur.fetchone()
        if current is not None and current[0] == etag:
            return UNCHANGED, current[1]
        return CONFLICT, current[1] if current else 0

    @staticmethod
    def _upsert_all(cur: Any, items: Sequence[tuple[str, str, str]]) -> list[tuple[str, int]]:
        """Distinct pointers: one statement for all. A row left alone (same ETag) is still
        locked by ON CONFLICT DO UPDATE, so the version read after it is the one it kept."""
        from psycopg2.extras import execute_values

        rows = execute_values(
            cur,
            "INSERT INTO meta_documents AS d (pointer, body, etag) VALUES %s"
            " ON CONFLICT (pointer) DO UPDATE"
            " SET body = EXCLUDED.body, etag = EXCLUDED.etag, version = d.version + 1"
            " WHERE d.etag <> EXCLUDED.etag"
            " RETURNING pointer, version, (xmax = 0)",
            list(items), page_size=len(items), fetch=True)
        done = {pointer: (CREATED if fresh else UPDATED, version)
                for pointer, version, fresh in rows}
        rest = [pointer for pointer, _, _ in items if pointer not in done]
        if rest:
            cur.execute("SELECT pointer, version FROM meta_documents WHERE pointer = ANY(%s)",
                        (rest,))
            done.update((pointer, (UNCHANGED, version)) for pointer, version in cur.fetchall())
        return [done[pointer] for pointer, _, _ in items]

    def close(self) -> None:
        self._drain()
