"""The SQL shared by the SQLite and PostgreSQL stores (both speak ``ON CONFLICT``).

Statements are written with ``?`` placeholders; a backend rewrites them to its paramstyle.
Table names are constants of this module, never user input; values are always parameters.
"""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

from cic_seeding.state.base import (
    Cursor,
    OutTx,
    Payment,
    PaymentSummary,
    StateStore,
    Status,
    TxStatus,
    UserState,
    norm,
)

#: 1: users, cursors, payments; 2: the outbox (every signed transaction, before broadcast).
SCHEMA_VERSION = 2

TABLES = ("meta", "users", "user_txs", "cursors", "block_hashes", "payments", "outbox")

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS users (
        importer TEXT NOT NULL,
        address TEXT NOT NULL,
        idx BIGINT NOT NULL,
        status TEXT NOT NULL,
        target TEXT,
        reason TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (importer, address))""",
    "CREATE INDEX IF NOT EXISTS users_status ON users (importer, status)",
    "CREATE INDEX IF NOT EXISTS users_target ON users (importer, target)",
    """CREATE TABLE IF NOT EXISTS user_txs (
        importer TEXT NOT NULL,
        address TEXT NOT NULL,
        kind TEXT NOT NULL,
        tx_hash TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (importer, address, kind))""",
    """CREATE TABLE IF NOT EXISTS cursors (
        importer TEXT NOT NULL,
        chain TEXT NOT NULL,
        next_block BIGINT NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (importer, chain))""",
    """CREATE TABLE IF NOT EXISTS block_hashes (
        importer TEXT NOT NULL,
        chain TEXT NOT NULL,
        number BIGINT NOT NULL,
        hash TEXT NOT NULL,
        PRIMARY KEY (importer, chain, number))""",
    """CREATE TABLE IF NOT EXISTS payments (
        seq {serial},
        importer TEXT NOT NULL,
        address TEXT NOT NULL,
        kind TEXT NOT NULL,
        amount TEXT NOT NULL,
        status TEXT NOT NULL,
        tx_hash TEXT,
        raw_tx TEXT,
        nonce BIGINT,
        block_number BIGINT,
        reason TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        CONSTRAINT payments_once UNIQUE (importer, address, kind))""",
    "CREATE INDEX IF NOT EXISTS payments_status ON payments (importer, status)",
    # version 2
    """CREATE TABLE IF NOT EXISTS outbox (
        tx_hash TEXT PRIMARY KEY,
        chain TEXT NOT NULL,
        sender TEXT NOT NULL,
        nonce BIGINT NOT NULL,
        raw TEXT NOT NULL,
        purpose TEXT NOT NULL,
        owner TEXT NOT NULL,
        family TEXT NOT NULL,
        status TEXT NOT NULL,
        sends INTEGER NOT NULL DEFAULT 0,
        block_number BIGINT,
        reason TEXT,
        sent_at DOUBLE PRECISION NOT NULL DEFAULT 0,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS outbox_sender ON outbox (chain, sender, nonce)",
    "CREATE INDEX IF NOT EXISTS outbox_family ON outbox (family)",
    "CREATE INDEX IF NOT EXISTS outbox_owner ON outbox (purpose, owner)",
]

_TX_COLS = ("tx_hash, chain, sender, nonce, raw, purpose, owner, family, status, sends, "
            "block_number, reason, sent_at, created_at")
#: Values per IN (...) list: well under every backend's limit of bound parameters.
_IN_CHUNK = 500
#: The ``txs`` of every user without any (shared: one empty dict each adds up at 100,000 users).
_NO_TXS: Mapping[str, str] = MappingProxyType({})
_USER_COLS = "importer, address, idx, status, target, reason, attempts, created_at, updated_at"
_PAY_COLS = ("importer, address, kind, status, amount, tx_hash, raw_tx, nonce, block_number, "
             "reason, updated_at, seq")


def _in(values: Sequence[Any]) -> str:
    return "(" + ", ".join("?" for _ in values) + ")"


class SqlStateStore(StateStore):
    """Everything but connecting, transactions and bulk writes, which differ per backend."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._depth = 0

    # -- backend hooks ------------------------------------------------------------------------
    @abc.abstractmethod
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement; return a cursor-like object."""

    @abc.abstractmethod
    def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for every row (a bulk UPDATE or an INSERT)."""

    @abc.abstractmethod
    def _begin(self) -> None: ...

    @abc.abstractmethod
    def _commit(self) -> None: ...

    @abc.abstractmethod
    def _rollback(self) -> None: ...

    # -- transactions ------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._begin()
            self._depth = 1
            try:
                yield
            except BaseException:
                self._depth = 0
                self._rollback()
                raise
            self._depth = 0
            self._commit()

    def _create_schema(self, serial: str) -> None:
        with self.transaction():
            for statement in SCHEMA:
                self._execute(statement.format(serial=serial))
            row = self._execute("SELECT value FROM meta WHERE key = ?", ("schema_version",)
                                ).fetchone()
            if row is None:
                self._execute("INSERT INTO meta (key, value) VALUES (?, ?)",
                              ("schema_version", str(SCHEMA_VERSION)))
            elif int(row[0]) < SCHEMA_VERSION:
                # the statements above created what a newer version adds (version 2: the
                # outbox table, empty); nothing an older version wrote changes
                self._execute("UPDATE meta SET value = ? WHERE key = ?",
                              (str(SCHEMA_VERSION), "schema_version"))
            elif int(row[0]) > SCHEMA_VERSION:
                from cic_seeding.errors import StateError

                raise StateError(
                    f"state store {self.describe()} has schema version {row[0]}; this cic-seeding "
                    f"knows up to {SCHEMA_VERSION}", hint="upgrade cic-seeding")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self.transaction():
            return list(self._execute(sql, params).fetchall())

    # -- users -------------------------------------------------------------------------------
    def add_users(self, importer: str, users: Iterable[tuple[int, str]]) -> int:
        now = time.time()
        rows = [(importer, norm(a), i, Status.PENDING.value, now, now) for i, a in users]
        with self.transaction():
            before = self._count("users", importer)
            self._many("INSERT INTO users (importer, address, idx, status, created_at, updated_at)"
                       " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", rows)
            return self._count("users", importer) - before

    def _count(self, table: str, importer: str) -> int:
        assert table in TABLES
        return int(self._execute(f"SELECT count(*) FROM {table} WHERE importer = ?",
                                 (importer,)).fetchone()[0])

    def _user_rows(self, where: str, params: Sequence[Any], txs: bool = True,
                   limit: int | None = None) -> list[UserState]:
        # ``where`` filters users; the transactions of the same importer are matched in Python.
        sql = f"SELECT {_USER_COLS} FROM users WHERE {where} ORDER BY idx"
        if limit is not None:
            sql, params = sql + " LIMIT ?", (*params, int(limit))
        with self.transaction():
            rows = self._execute(sql, params).fetchall()
            if not txs or not rows:
                tx_rows = []
            elif len(rows) == 1:
                tx_rows = self._execute(
                    "SELECT address, kind, tx_hash FROM user_txs WHERE importer = ? AND "
                    "address = ?", (rows[0][0], rows[0][1])).fetchall()
            else:
                tx_rows = self._execute("SELECT address, kind, tx_hash FROM user_txs "
                                        "WHERE importer = ?", (rows[0][0],)).fetchall()
        by_user: dict[str, dict[str, str]] = {}
        for address, kind, tx_hash in tx_rows:
            by_user.setdefault(address, {})[kind] = tx_hash
        del tx_rows
        out = []
        while rows:  # each row dropped as its UserState is made: the two lists never coexist
            r = rows.pop()
            out.append(UserState(r[0], r[1], int(r[2]), Status(r[3]), r[4], r[5], int(r[6]),
                                 float(r[7]), float(r[8]), by_user.get(r[1], _NO_TXS)))
        out.reverse()
        return out

    def user(self, importer: str, address: str) -> UserState | None:
        found = self._user_rows("importer = ? AND address = ?", (importer, norm(address)))
        return found[0] if found else None

    def users(self, importer: str, statuses: Iterable[Status] | None = None, *,
              txs: bool = True) -> list[UserState]:
        where, params = self._status_filter(importer, statuses)
        return self._user_rows(where, params, txs)

    @staticmethod
    def _status_filter(importer: str, statuses: Iterable[Status] | None
                       ) -> tuple[str, tuple[Any, ...]]:
        if statuses is None:
            return "importer = ?", (importer,)
        values = tuple(Status(s).value for s in statuses)
        if not values:
            return "importer = ? AND 1 = 0", (importer,)
        return f"importer = ? AND status IN {_in(values)}", (importer, *values)

    def addresses(self, importer: str, statuses: Iterable[Status] | None = None) -> set[str]:
        where, params = self._status_filter(importer, statuses)
        return {r[0] for r in self._query(f"SELECT address FROM users WHERE {where}", params)}

    def counts(self, importer: str) -> dict[Status, int]:
        out = {s: 0 for s in Status}
        for status, n in self._query(
                "SELECT status, count(*) FROM users WHERE importer = ? GROUP BY status",
                (importer,)):
            out[Status(status)] = int(n)
        return out

    def mark_submitted(self, importer: str,
                       items: Iterable[tuple[str, str, str, str | None]]) -> None:
        now = time.time()
        rows = [(norm(a), kind, h, None if t is None else norm(t)) for a, kind, h, t in items]
        with self.transaction():
            self._many("UPDATE users SET status = ?, target = COALESCE(?, target), reason = NULL, "
                       "attempts = attempts + 1, updated_at = ? WHERE importer = ? AND address = ?",
                       [(Status.SUBMITTED.value, t, now, importer, a) for a, _, _, t in rows])
            self._many("INSERT INTO user_txs (importer, address, kind, tx_hash, created_at) "
                       "VALUES (?, ?, ?, ?, ?) ON CONFLICT (importer, address, kind) DO UPDATE "
                       "SET tx_hash = excluded.tx_hash, created_at = excluded.created_at",
                       [(importer, a, k, h, now) for a, k, h, _ in rows])

    def mark_confirmed(self, importer: str, items: Iterable[tuple[str, str | None]]) -> None:
        now = time.time()
        self._many_tx(
            "UPDATE users SET status = ?, target = COALESCE(?, target, address), reason = NULL, "
            "updated_at = ? WHERE importer = ? AND address = ?",
            [(Status.CONFIRMED.value, None if t is None else norm(t), now, importer, norm(a))
             for a, t in items])

    def mark_failed(self, importer: str, items: Iterable[tuple[str, str]]) -> None:
        now = time.time()
        self._many_tx(
            "UPDATE users SET status = ?, reason = ?, updated_at = ? "
            "WHERE importer = ? AND address = ?",
            [(Status.FAILED.value, reason, now, importer, norm(a)) for a, reason in items])

    def _many_tx(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            with self.transaction():
                self._many(sql, rows)

    def targets(self, importer: str) -> dict[str, str]:
        return {t: a for a, t in self._query(
            "SELECT address, target FROM users WHERE importer = ? AND target IS NOT NULL",
            (importer,))}

    # -- cursor ------------------------------------------------------------------------------
    def cursor(self, importer: str, chain: str) -> Cursor | None:
        with self.transaction():
            row = self._execute("SELECT next_block FROM cursors WHERE importer = ? AND chain = ?",
                                (importer, chain)).fetchone()
            if row is None:
                return None
            hashes = {int(n): h for n, h in self._execute(
                "SELECT number, hash FROM block_hashes WHERE importer = ? AND chain = ?",
                (importer, chain)).fetchall()}
        return Cursor(importer, chain, int(row[0]), hashes)

    def init_cursor(self, importer: str, chain: str, next_block: int) -> Cursor:
        with self.transaction():
            self._execute("INSERT INTO cursors (importer, chain, next_block, updated_at) "
                          "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                          (importer, chain, next_block, time.time()))
            cursor = self.cursor(importer, chain)
        assert cursor is not None
        return cursor

    def advance_cursor(self, importer: str, chain: str, next_block: int,
                       hashes: Mapping[int, str]) -> None:
        with self.transaction():
            self._execute(
                "INSERT INTO cursors (importer, chain, next_block, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (importer, chain) DO UPDATE SET next_block = excluded.next_block, "
                "updated_at = excluded.updated_at", (importer, chain, next_block, time.time()))
            self._many("INSERT INTO block_hashes (importer, chain, number, hash) "
                       "VALUES (?, ?, ?, ?) "
                       "ON CONFLICT (importer, chain, number) DO UPDATE SET hash = excluded.hash",
                       [(importer, chain, n, h) for n, h in sorted(hashes.items())])
            self._execute("DELETE FROM block_hashes WHERE importer = ? AND chain = ? "
                          "AND number < ?", (importer, chain, next_block - self.KEEP_HASHES))

    def rewind_cursor(self, importer: str, chain: str, next_block: int) -> None:
        with self.transaction():
            self._execute("UPDATE cursors SET next_block = ?, updated_at = ? "
                          "WHERE importer = ? AND chain = ?",
                          (next_block, time.time(), importer, chain))
            self._execute("DELETE FROM block_hashes WHERE importer = ? AND chain = ? "
                          "AND number >= ?", (importer, chain, next_block))

    # -- payments ----------------------------------------------------------------------------
    def plan_payments(self, importer: str, items: Iterable[tuple[str, str, int]]) -> int:
        now = time.time()
        rows = [(importer, norm(a), k, str(int(amount)), Status.PENDING.value, now, now)
                for a, k, amount in items]
        with self.transaction():
            before = self._count("payments", importer)
            self._many("INSERT INTO payments (importer, address, kind, amount, status, created_at,"
                       " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", rows)
            return self._count("payments", importer) - before

    @staticmethod
    def _payment(r: Sequence[Any]) -> Payment:
        return Payment(r[0], r[1], r[2], Status(r[3]), int(r[4]), r[5], r[6],
                       None if r[7] is None else int(r[7]), None if r[8] is None else int(r[8]),
                       r[9], float(r[10]), int(r[11]))

    def payment(self, importer: str, address: str, kind: str) -> Payment | None:
        rows = self._query(f"SELECT {_PAY_COLS} FROM payments WHERE importer = ? AND address = ? "
                           "AND kind = ?", (importer, norm(address), kind))
        return self._payment(rows[0]) if rows else None

    def payments(self, importer: str, statuses: Iterable[Status] | None = None,
                 kind: str | None = None, limit: int | None = None,
                 after: int = 0) -> list[Payment]:
        where, params = self._status_filter(importer, statuses)
        if kind is not None:
            where, params = where + " AND kind = ?", (*params, kind)
        if after:
            where, params = where + " AND seq > ?", (*params, int(after))
        sql = f"SELECT {_PAY_COLS} FROM payments WHERE {where} ORDER BY seq"
        if limit is not None:
            sql, params = sql + " LIMIT ?", (*params, int(limit))
        return [self._payment(r) for r in self._query(sql, params)]

    def payment_counts(self, importer: str) -> dict[tuple[str, Status], int]:
        return {(k, Status(s)): int(n) for k, s, n in self._query(
            "SELECT kind, status, count(*) FROM payments WHERE importer = ? GROUP BY kind, status",
            (importer,))}

    def payment_summary(self, importer: str) -> PaymentSummary:
        (planned, done, failed), = self._query(
            "SELECT count(*), "
            "coalesce(sum(CASE WHEN unpaid = 0 AND bad = 0 THEN 1 ELSE 0 END), 0), "
            "coalesce(sum(CASE WHEN bad > 0 THEN 1 ELSE 0 END), 0) FROM ("
            " SELECT address, sum(CASE WHEN status <> ? THEN 1 ELSE 0 END) AS unpaid,"
            " sum(CASE WHEN status = ? THEN 1 ELSE 0 END) AS bad"
            " FROM payments WHERE importer = ? GROUP BY address) AS per_user",
            (Status.CONFIRMED.value, Status.FAILED.value, importer))
        return PaymentSummary(int(planned), int(done), int(failed))

    def unplanned_targets(self, importer: str, limit: int | None = None) -> list[str]:
        sql = ("SELECT u.target FROM users u WHERE u.importer = ? AND u.target IS NOT NULL "
               "AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.importer = u.importer "
               "AND p.address = u.target) ORDER BY u.idx")
        params: tuple[Any, ...] = (importer,)
        if limit is not None:
            sql, params = sql + " LIMIT ?", (*params, int(limit))
        return [t for (t,) in self._query(sql, params)]

    def failed_unpaid(self, importer: str, limit: int = 10) -> tuple[int, list[UserState]]:
        where = ("importer = ? AND status = ? AND NOT EXISTS (SELECT 1 FROM payments p WHERE "
                 "p.importer = users.importer AND p.address = coalesce(users.target, "
                 "users.address))")
        params = (importer, Status.FAILED.value)
        ((count,),) = self._query(f"SELECT count(*) FROM users WHERE {where}", params)
        if not count:
            return 0, []
        return int(count), self._user_rows(where, params, txs=False, limit=limit)

    def mark_payments_submitted(
            self, importer: str, items: Iterable[tuple[str, str, str, str, int]]) -> None:
        now = time.time()
        self._many_tx(
            "UPDATE payments SET status = ?, tx_hash = ?, raw_tx = ?, nonce = ?, "
            "block_number = NULL, reason = NULL, updated_at = ? "
            "WHERE importer = ? AND address = ? AND kind = ?",
            [(Status.SUBMITTED.value, h, raw, nonce, now, importer, norm(a), k)
             for a, k, h, raw, nonce in items])

    def mark_payments_confirmed(self, importer: str,
                                items: Iterable[tuple[str, str, int]]) -> None:
        now = time.time()
        self._many_tx(
            "UPDATE payments SET status = ?, block_number = ?, reason = NULL, updated_at = ? "
            "WHERE importer = ? AND address = ? AND kind = ?",
            [(Status.CONFIRMED.value, block, now, importer, norm(a), k) for a, k, block in items])

    def mark_payments_failed(self, importer: str, items: Iterable[tuple[str, str, str]]) -> None:
        now = time.time()
        self._many_tx(
            "UPDATE payments SET status = ?, reason = ?, updated_at = ? "
            "WHERE importer = ? AND address = ? AND kind = ?",
            [(Status.FAILED.value, reason, now, importer, norm(a), k) for a, k, reason in items])

    def reset_payments(self, importer: str, items: Iterable[tuple[str, str]]) -> None:
        now = time.time()
        self._many_tx(
            "UPDATE payments SET status = ?, tx_hash = NULL, raw_tx = NULL, nonce = NULL, "
            "block_number = NULL, updated_at = ? WHERE importer = ? AND address = ? AND kind = ?",
            [(Status.PENDING.value, now, importer, norm(a), k) for a, k in items])

    def reopen_payments(self, importer: str, from_block: int) -> int:
        with self.transaction():
            cur = self._execute(
                "UPDATE payments SET status = ?, block_number = NULL, updated_at = ? "
                "WHERE importer = ? AND status = ? AND block_number >= ?",
                (Status.SUBMITTED.value, time.time(), importer, Status.CONFIRMED.value,
                 from_block))
            return int(cur.rowcount)

    # -- outbox ------------------------------------------------------------------------------
    def record_txs(self, txs: Iterable[OutTx]) -> None:
        now = time.time()
        rows = [(t.tx_hash.lower(), t.chain, norm(t.sender), int(t.nonce), t.raw, t.purpose,
                 t.owner.lower(), t.family.lower(), TxStatus(t.status).value, int(t.sends),
                 t.block_number, t.reason, float(t.sent_at), now, now) for t in txs]
        if rows:
            with self.transaction():
                self._many(f"INSERT INTO outbox ({_TX_COLS}, updated_at) VALUES "
                           "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                           "ON CONFLICT DO NOTHING", rows)

    @staticmethod
    def _tx(r: Sequence[Any]) -> OutTx:
        return OutTx(r[0], r[1], r[2], int(r[3]), r[4], r[5], r[6], r[7], TxStatus(r[8]),
                     int(r[9]), None if r[10] is None else int(r[10]), r[11], float(r[12]),
                     float(r[13]))

    def txs(self, chain: str, *, hashes: Iterable[str] | None = None,
            families: Iterable[str] | None = None, sender: str | None = None,
            statuses: Iterable[TxStatus] | None = None, purpose: str | None = None,
            owners: Iterable[str] | None = None, min_nonce: int | None = None,
            limit: int | None = None) -> list[OutTx]:
        where: list[str] = ["chain = ?"]
        params: list[Any] = [chain]
        if sender is not None:
            where.append("sender = ?")
            params.append(norm(sender))
        if statuses is not None:
            values = [TxStatus(s).value for s in statuses]
            if not values:
                return []
            where.append(f"status IN {_in(values)}")
            params.extend(values)
        if purpose is not None:
            where.append("purpose = ?")
            params.append(purpose)
        if min_nonce is not None:
            where.append("nonce >= ?")
            params.append(int(min_nonce))
        lists = [(col, [v.lower() for v in vals]) for col, vals in
                 (("tx_hash", hashes), ("family", families), ("owner", owners))
                 if vals is not None]
        if len(lists) > 1:
            raise ValueError("filter by one of hashes, families and owners at a time")
        order = " ORDER BY sender, nonce, created_at"
        tail = "" if limit is None else f" LIMIT {int(limit)}"
        if not lists:
            return [self._tx(r) for r in self._query(
                f"SELECT {_TX_COLS} FROM outbox WHERE {' AND '.join(where)}{order}{tail}",
                params)]
        col, values = lists[0]
        # the list's own index finds the rows (the primary key, outbox_family, outbox_owner):
        # "x || ''" keeps SQLite's planner from taking outbox_sender for "chain = ?" (or
        # outbox_owner for "purpose = ?") and reading every row of the chain per query
        where = [w.replace("chain = ?", "chain || '' = ?") for w in where]
        if col != "owner":
            where = [w.replace("purpose = ?", "purpose || '' = ?") for w in where]
        out: list[OutTx] = []
        for i in range(0, len(values), _IN_CHUNK):
            chunk = values[i:i + _IN_CHUNK]
            out.extend(self._tx(r) for r in self._query(
                f"SELECT {_TX_COLS} FROM outbox WHERE {' AND '.join(where)} "
                f"AND {col} IN {_in(chunk)}{order}{tail}", [*params, *chunk]))
        out.sort(key=lambda t: (t.sender, t.nonce, t.created_at))
        return out if limit is None else out[:limit]

    def mark_txs(self, items: Iterable[tuple[str, TxStatus, int | None, str | None]]) -> None:
        now = time.time()
        self._many_tx("UPDATE outbox SET status = ?, block_number = ?, reason = ?, "
                      "updated_at = ? WHERE tx_hash = ?",
                      [(TxStatus(s).value, block, reason, now, h.lower())
                       for h, s, block, reason in items])

    def mark_txs_sent(self, hashes: Iterable[str], at: float) -> None:
        now = time.time()
        self._many_tx("UPDATE outbox SET status = ?, sends = sends + 1, sent_at = ?, "
                      "reason = NULL, updated_at = ? WHERE tx_hash = ?",
                      [(TxStatus.SENT.value, at, now, h.lower()) for h in hashes])

    def tx_counts(self, chain: str) -> dict[tuple[str, TxStatus], int]:
        return {(p, TxStatus(s)): int(n) for p, s, n in self._query(
            "SELECT purpose, status, count(*) FROM outbox WHERE chain = ? "
            "GROUP BY purpose, status", (chain,))}
