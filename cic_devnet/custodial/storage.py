"""The engine's storage: sealed keys, per-signer nonces, the transaction queue.

PostgreSQL for the service; a SQLite file for an engine embedded in one process
(:func:`.stores.open_storage` picks by URL; the SQLite dialect lives in :mod:`._sqlite`). The SQL is
written once, in PostgreSQL's words.

Tables (in the configured schema, created on first use under an advisory lock, so several
workers starting at once do not race)::

    engine_meta (key, value)                      scrypt salt, passphrase canary
    accounts    (address, request_id UNIQUE, sealed_key, created_at)
    nonces      (chain_id, address, next_nonce)   one row per signer: the allocation counter
    txs         (id, chain_id, signer, nonce, kind, subject, request_id, to_address, data,
                 value, gas, gas_price, raw, tx_hash, replaced, status, error_class, error,
                 attempts, block_number, created_at, updated_at)
                replaced: earlier hashes of the row signed with the same nonce
                status: queued -> sent -> mined | failed

Every thread gets its own connection; :meth:`Storage.transaction` is one database
transaction (committed on success, rolled back on any exception); one opened inside another
on the same thread joins it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cic_seeding.custodial import redact
from cic_seeding.errors import CustodialError, CustodialUnavailableError

log = logging.getLogger(__name__)

#: URL prefix of a SQLite database: ``sqlite:///relative/path`` or ``sqlite:////absolute/path``.
SQLITE_PREFIX = "sqlite:///"

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS engine_meta (key TEXT PRIMARY KEY, value BYTEA NOT NULL)",
    """CREATE TABLE IF NOT EXISTS accounts (
        address TEXT PRIMARY KEY,
        request_id TEXT UNIQUE,
        sealed_key BYTEA NOT NULL,
        created_at DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS nonces (
        chain_id BIGINT NOT NULL,
        address TEXT NOT NULL,
        next_nonce BIGINT NOT NULL,
        PRIMARY KEY (chain_id, address))""",
    """CREATE TABLE IF NOT EXISTS txs (
        id BIGSERIAL PRIMARY KEY,
        chain_id BIGINT NOT NULL,
        signer TEXT NOT NULL,
        nonce BIGINT NOT NULL,
        kind TEXT NOT NULL,
        subject TEXT,
        request_id TEXT,
        to_address TEXT,
        data BYTEA NOT NULL,
        value NUMERIC(78) NOT NULL,
        gas BIGINT NOT NULL,
        gas_price NUMERIC(78) NOT NULL,
        raw TEXT NOT NULL,
        tx_hash TEXT NOT NULL,
        replaced TEXT[] NOT NULL DEFAULT '{}',
        status TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'mined', 'failed')),
        error_class TEXT,
        error TEXT,
        attempts INTEGER NOT NULL DEFAULT 1,
        block_number BIGINT,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL)""",
    """CREATE UNIQUE INDEX IF NOT EXISTS txs_request ON txs (chain_id, kind, request_id)
        WHERE request_id IS NOT NULL""",
    "CREATE INDEX IF NOT EXISTS txs_open ON txs (chain_id, status) "
    "WHERE status IN ('queued', 'sent')",
)

#: Connection failures that retrying cannot fix (wrong role, database, password).
_TERMINAL = ("does not exist", "password authentication failed", "no pg_hba.conf entry",
             "invalid dsn", "missing \"=\"", "invalid connection option")


def _connection_error(url: str, schema: str | None, exc: Exception) -> CustodialError:
    where = f"{redact(url)}" + (f" (schema {schema})" if schema else "")
    text = str(exc).strip().replace("\n", " ")
    if any(t in text for t in _TERMINAL):
        return CustodialError(f"cannot open the custodial database {where}: {text}",
                              hint="check custodial_db_url (CIC_CUSTODIAL_DB_URL): user, "
                              "password and database name")
    return CustodialUnavailableError(f"cannot reach the custodial database {where}: {text}",
                                     hint="is PostgreSQL running at that address?")


def placeholders(count: int) -> str:
    """``%s, %s, ...``: the parameters of an ``IN (...)`` list of ``count`` values."""
    return ", ".join(["%s"] * count)


def values(columns: int, rows: int) -> str:
    """``(%s, %s), (%s, %s), ...``: the parameters of a ``VALUES`` list of ``rows`` rows."""
    row = f"({placeholders(columns)})"
    return ", ".join([row] * rows)


class Storage:
    """The engine's PostgreSQL database; share one instance between the threads of a process."""

    def __init__(self, url: str, schema: str | None = None, *, create: bool = True) -> None:
        import psycopg2

        self._pg = psycopg2
        self.url = url
        self.schema = schema
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()
        self.connection()  # fail now, with a clear message, rather than on the first task
        if create:
            self.create_schema()

    def describe(self) -> str:
        return redact(self.url) + (f" (schema {self.schema})" if self.schema else "")

    # -- connections -------------------------------------------------------------------------
    def connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is not None and not conn.closed:
            return conn
        try:
            conn = self._pg.connect(self.url, connect_timeout=5)
            if self.schema:
                from psycopg2 import sql

                with conn.cursor() as cur:
                    cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                        sql.Identifier(self.schema)))
                    cur.execute(sql.SQL("SET search_path TO {}").format(
                        sql.Identifier(self.schema)))
                conn.commit()
        except self._pg.Error as exc:
            raise _connection_error(self.url, self.schema, exc) from None
        self._local.conn = conn
        with self._lock:
            self._all.append(conn)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A cursor inside one transaction; psycopg2 errors become CustodialError (transient
        when the connection was lost). Inside another transaction of this thread, a cursor of
        that one (e.g. a custodial account's key read while the queue re-signs its row)."""
        conn = self.connection()
        if getattr(self._local, "open", False):
            with conn.cursor() as cur:
                yield cur
            return
        try:
            self._local.open = True
            with conn, conn.cursor() as cur:
                yield cur
        except self._pg.OperationalError as exc:
            self._drop(conn)
            raise CustodialUnavailableError(
                f"custodial database {self.describe()}: {str(exc).strip()}") from exc
        except self._pg.InterfaceError as exc:
            self._drop(conn)
            raise CustodialUnavailableError(
                f"custodial database {self.describe()}: {str(exc).strip()}") from exc
        except self._pg.Error as exc:
            raise CustodialError(f"custodial database {self.describe()}: "
                                 f"{str(exc).strip()}") from exc
        finally:
            self._local.open = False

    def _drop(self, conn: Any) -> None:
        with contextlib.suppress(self._pg.Error):  # it is already gone
            conn.close()
        self._local.conn = None

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            if not conn.closed:
                conn.close()

    # -- schema ------------------------------------------------------------------------------
    def create_schema(self) -> None:
        lock = int.from_bytes(hashlib.sha256(
            f"cic-custodial:{self.schema}".encode()).digest()[:8], "big", signed=True)
        with self.transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
            for statement in SCHEMA:
                cur.execute(statement)

    def meta(self, key: str, default: bytes) -> bytes:
        """The value of ``key`` in engine_meta, storing ``default`` first if it has none."""
        with self.transaction() as cur:
            cur.execute("INSERT INTO engine_meta (key, value) VALUES (%s, %s) "
                        "ON CONFLICT (key) DO NOTHING", (key, default))
            cur.execute("SELECT value FROM engine_meta WHERE key = %s", (key,))
            return bytes(cur.fetchone()[0])


def ensure_database(url: str) -> bool:
    """Create the database ``url`` names if it does not exist; True if it was created.

    Connects to the server's ``postgres`` database to do so (the user needs CREATEDB).
    """
    import psycopg2
    from psycopg2 import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name:
        raise CustodialError(f"the custodial database URL {redact(url)} names no database")
    try:
        psycopg2.connect(url, connect_timeout=5).close()
        return False
    except psycopg2.OperationalError as exc:
        if f'database "{name}" does not exist' not in str(exc):
            raise _connection_error(url, None, exc) from None
    admin = urlunsplit(parts._replace(path="/postgres"))
    try:
        conn = psycopg2.connect(admin, connect_timeout=5)
    except psycopg2.Error as exc:
        raise _connection_error(admin, None, exc) from None
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg2.errors.DuplicateDatabase:
        return False  # created meanwhile by someone else
    except psycopg2.Error as exc:
        raise CustodialError(f"cannot create the custodial database {name!r} on "
                             f"{redact(admin)}: {str(exc).strip()}") from None
    finally:
        conn.close()
    log.info("created the custodial database %s", name)
    return True
