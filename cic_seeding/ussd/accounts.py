"""The USSD gateway's accounts table in PostgreSQL, shared by the gateway and ``ussd-pins``.

One row per phone number: address (NULL until the custodial engine made the account),
status (:data:`PENDING` 1, :data:`ACTIVE` 2, :data:`LOCKED` 3, :data:`RESET` 4), preferred
language, bcrypt PIN hash, failed PIN attempts and the profile given at registration. A row is
written whole in one statement, so there is never a half-created account.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from cic_seeding.errors import UssdError

PENDING, ACTIVE, LOCKED, RESET = 1, 2, 3, 4
STATUS_NAMES = {PENDING: "pending", ACTIVE: "active", LOCKED: "locked", RESET: "reset"}
#: Wrong PINs in a row that lock an account.
MAX_PIN_ATTEMPTS = 3
TABLE = "ussd_accounts"
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

_DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    phone TEXT PRIMARY KEY,
    address TEXT,
    status SMALLINT NOT NULL CHECK (status BETWEEN 1 AND 4),
    language TEXT NOT NULL,
    pin_hash TEXT NOT NULL,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    given_name TEXT NOT NULL DEFAULT '',
    family_name TEXT NOT NULL DEFAULT '',
    gender TEXT NOT NULL DEFAULT '',
    location TEXT NOT NULL DEFAULT '',
    meta_done BOOLEAN NOT NULL DEFAULT false,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
)"""

_COLUMNS = ("phone, address, status, language, pin_hash, failed_attempts, given_name, "
            "family_name, gender, location, meta_done")


@dataclass(frozen=True)
class Account:
    phone: str
    address: str | None
    status: int
    language: str
    pin_hash: str
    failed_attempts: int = 0
    given_name: str = ""
    family_name: str = ""
    gender: str = ""
    location: str = ""
    meta_done: bool = False


class Accounts:
    """The accounts table behind a small connection pool. Thread-safe."""

    def __init__(self, db_url: str, schema: str | None = None, *, pool_size: int = 16) -> None:
        import psycopg2
        from psycopg2.pool import ThreadedConnectionPool

        if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
            raise UssdError(f"schema name {schema!r} is not a lower-case SQL identifier")
        self.schema = schema
        self.describe = f"PostgreSQL {_masked(db_url)}{f' schema {schema}' if schema else ''}"
        options = f"-c search_path={schema}" if schema else None
        try:
            self._pool = ThreadedConnectionPool(1, pool_size, db_url, options=options,
                                                connect_timeout=5)
        except psycopg2.Error as exc:
            raise UssdError(f"cannot open the USSD accounts store {self.describe}: "
                            f"{str(exc).strip()}") from None
        with self._cursor() as cur:
            if schema:
                cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            cur.execute(_DDL)

    def close(self) -> None:
        self._pool.closeall()

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[Any]:
        conn = self._pool.getconn()
        try:
            with conn, conn.cursor() as cur:
                yield cur
        finally:
            self._pool.putconn(conn)

    def _one(self, query: str, params: tuple[Any, ...]) -> Account | None:
        with self._cursor() as cur:
            cur.execute(query, params)
            row = cur.fetchone()
        return Account(*row) if row else None

    # -- reads -------------------------------------------------------------------------------
    def get(self, phone: str) -> Account | None:
        return self._one(f"SELECT {_COLUMNS} FROM {TABLE} WHERE phone = %s", (phone,))

    def unfinished(self, limit: int = 500) -> list[Account]:
        """Registrations whose account or metadata is not done yet, oldest first."""
        with self._cursor() as cur:
            cur.execute(f"SELECT {_COLUMNS} FROM {TABLE} WHERE NOT meta_done "
                        "ORDER BY created_at LIMIT %s", (limit,))
            return [Account(*r) for r in cur.fetchall()]

    def count(self) -> int:
        with self._cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {TABLE}")
            return int(cur.fetchone()[0])

    # -- registration ------------------------------------------------------------------------
    def create_pending(self, phone: str, *, language: str, pin_hash: str, given_name: str,
                       family_name: str, gender: str, location: str) -> bool:
        """A new pending registration; False if the phone has an account already."""
        with self._cursor() as cur:
            cur.execute(f"INSERT INTO {TABLE} (phone, status, language, pin_hash, given_name, "
                        "family_name, gender, location) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                        " ON CONFLICT (phone) DO NOTHING RETURNING phone",
                        (phone, PENDING, language, pin_hash, given_name, family_name, gender,
                         location))
            return cur.fetchone() is not None

    def set_address(self, phone: str, address: str) -> None:
        with self._cursor() as cur:
            cur.execute(f"UPDATE {TABLE} SET address = %s, updated_at = now() "
                        "WHERE phone = %s AND address IS NULL", (address, phone))

    def activate(self, phone: str) -> None:
        """Metadata written: a pending account becomes active."""
        with self._cursor() as cur:
            cur.execute(f"UPDATE {TABLE} SET meta_done = true, updated_at = now(), status = "
                        f"CASE WHEN status = {PENDING} THEN {ACTIVE} ELSE status END "
                        "WHERE phone = %s", (phone,))

    # -- PINs --------------------------------------------------------------------------------
    def pin_failed(self, phone: str) -> Account | None:
        """Count one wrong PIN; the account locks at :data:`MAX_PIN_ATTEMPTS`."""
        return self._one(
            f"UPDATE {TABLE} SET failed_attempts = failed_attempts + 1, updated_at = now(), "
            f"status = CASE WHEN failed_attempts + 1 >= {MAX_PIN_ATTEMPTS} THEN {LOCKED} "
            f"ELSE status END WHERE phone = %s RETURNING {_COLUMNS}", (phone,))

    def pin_ok(self, phone: str) -> None:
        with self._cursor() as cur:
            cur.execute(f"UPDATE {TABLE} SET failed_attempts = 0 WHERE phone = %s "
                        "AND failed_attempts <> 0", (phone,))

    def set_pin(self, phone: str, pin_hash: str) -> None:
        """A new PIN: the account is active again, its failed attempts forgotten."""
        with self._cursor() as cur:
            cur.execute(f"UPDATE {TABLE} SET pin_hash = %s, failed_attempts = 0, "
                        f"status = {ACTIVE}, updated_at = now() WHERE phone = %s",
                        (pin_hash, phone))

    def set_language(self, phone: str, language: str) -> None:
        with self._cursor() as cur:
            cur.execute(f"UPDATE {TABLE} SET language = %s, updated_at = now() "
                        "WHERE phone = %s", (language, phone))

    # -- seeding from outside USSD -----------------------------------------------------------
    def upsert_seeded(self, rows: Sequence[tuple[str, str | None, str | None, int, str]]
                      ) -> int:
        """Set ``(phone, address, pin_hash, status, language)`` of accounts made outside USSD.

        A missing account is created (metadata counted as done: its importer wrote it); an
        existing one keeps what a given None leaves out. Returns the rows written.
        """
        with self._cursor() as cur:
            for phone, address, pin_hash, status, language in rows:
                cur.execute(
                    f"INSERT INTO {TABLE} (phone, address, status, language, pin_hash, "
                    "meta_done) VALUES (%s, %s, %s, %s, %s, true) ON CONFLICT (phone) DO UPDATE "
                    "SET address = COALESCE(EXCLUDED.address, {t}.address), status = "
                    "EXCLUDED.status, language = EXCLUDED.language, pin_hash = CASE WHEN "
                    "EXCLUDED.pin_hash = '' THEN {t}.pin_hash ELSE EXCLUDED.pin_hash END, "
                    "failed_attempts = 0, updated_at = now()".format(t=TABLE),
                    (phone, address, status, language, pin_hash or ""))
        return len(rows)


def _masked(url: str) -> str:
    return re.sub(r"^([a-z]+://[^:/@]+):[^@]*@", r"\1:****@", url)
