"""The PostgreSQL state store, selected by ``state_url = postgresql://...``.

The schema is created on first use. Bulk inserts go through ``execute_values`` and bulk updates
through ``execute_batch``: 100,000 users take seconds, not minutes.

**A lost connection** (PostgreSQL restarted, the network dropped) is reconnected to, with the
retry policy of :mod:`cic_seeding.remote` (:data:`RECONNECT`), and the work goes on where it
was, each write applied exactly once. The unit that is retried is the database transaction:

* Every writing statement of an open transaction is kept (a journal of the SQL and its
  parameters) until the transaction ends. When the connection breaks inside it, the server
  has rolled the whole transaction back (PostgreSQL never commits a transaction whose session
  died before ``COMMIT``), so the store reconnects, opens a new transaction, runs the journal
  again and then the statement that failed, and the caller's block carries on as if nothing
  happened. The journal holds the exact parameters of the first run (timestamps included), so
  the replayed transaction writes what the first would have. Reads are not run again (their
  answers are in), nor is what the caller's block did besides the store (files, chain
  calls): it already happened once.
* A ``COMMIT`` whose answer is lost may or may not have committed. A transaction that wrote
  asks for its transaction id (``txid_current()``) before committing; after reconnecting, the
  store asks the server what became of that id (``txid_status``, the server's own record, made
  for this case): *committed* -- done, nothing is run again; *aborted* -- the journal is run
  again in a new transaction and committed; *in progress* (the old session has not noticed it
  is gone yet) -- asked again after a pause. So no transaction is applied twice or lost, whether
  or not its writes are idempotent. Most are anyway (upserts, ``ON CONFLICT DO NOTHING``,
  status set to a value), but not all: ``mark_submitted`` counts ``attempts + 1``,
  ``mark_txs_sent`` counts ``sends + 1``, and ``add_users``/``plan_payments`` return how many
  rows were new. Those are exactly once only because the outcome is asked, never guessed.
* A read-only transaction takes no transaction id (it would cost a WAL flush); its reads
  were returned before ``COMMIT``, so a lost ``COMMIT`` loses nothing.
* Running a transaction's writes again on a later snapshot than its reads saw changes
  nothing the store promises: it runs at PostgreSQL's default READ COMMITTED, where every
  statement sees a fresh snapshot anyway, and the store's guarantees come from unique keys,
  ``ON CONFLICT`` and the named locks of :meth:`exclusive`, not from snapshots.
* Those named locks are session advisory locks, which die with the session: they are taken
  again on reconnecting, and if another process took one meanwhile the run stops with a
  :class:`~cic_seeding.errors.StateError` (two runs must never work one ledger at once).
  Prepared statements and the search path are set up again on the new session.

When the retries are spent the error is :class:`~cic_seeding.errors.StateUnavailableError`
(one line saying so); the open transaction was not committed, and a rerun resumes.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from cic_seeding.errors import StateError, StateUnavailableError
from cic_seeding.remote import STATE_STORE, RetryPolicy
from cic_seeding.state._sql import SqlStateStore

log = logging.getLogger(__name__)

T = TypeVar("T")

_VALUES = re.compile(r"VALUES \((\?(?:, \?)*)\)")
_PAGE = 1000
#: How a lost connection is retried: 12 reconnects over about 20-40 s (a restart takes a few).
RECONNECT = RetryPolicy(retries=12, base=0.1, cap=5.0)
#: Error codes of a session the server ended: admin_shutdown, crash_shutdown,
#: cannot_connect_now (class 08, connection_exception, is matched as a class).
_ENDED = ("57P01", "57P02", "57P03")
#: TCP keepalives, so a server that vanished without closing the socket is noticed.
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
               "keepalives_count": 3}


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":****@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


class PostgresStateStore(SqlStateStore):
    """State in PostgreSQL; ``schema`` (created if missing) keeps several stores apart.
    ``retry``: how a lost connection is retried (default :data:`RECONNECT`)."""

    def __init__(self, url: str, *, schema: str | None = None,
                 retry: RetryPolicy | None = None) -> None:
        super().__init__()
        import psycopg2
        import psycopg2.extras

        self._pg = psycopg2
        self._extras = psycopg2.extras
        self.url = url
        self.schema = schema
        self.retry = retry or RECONNECT
        self._statements: dict[str, str] = {}
        self._conn: Any = None
        self._cur: Any = None
        #: (sql, params or rows, bulk) of the open transaction, in order (see the module doc)
        self._journal: list[tuple[str, Sequence[Any], bool]] = []
        self._in_tx = False  # between _begin and _commit / _rollback
        self._open = False  # ... and the current session has that transaction open
        self._wrote = False  # ... and it has written something
        self._locks: dict[int, str] = {}  # advisory locks held (key -> name)
        #: Sessions opened after the first (for logs and tests).
        self.reconnects = 0
        try:
            self._connect(create=True)
        except psycopg2.Error as exc:
            raise StateError(f"cannot open the state store {redact_url(url)}: "
                             f"{str(exc).strip()}",
                             hint="check CIC_STATE_URL and that PostgreSQL is running") from None
        self._create_schema("BIGSERIAL")

    def describe(self) -> str:
        where = redact_url(self.url)
        return f"{where} (schema {self.schema})" if self.schema else where

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    # -- the session -------------------------------------------------------------------------
    def _connect(self, *, create: bool = False) -> None:
        """A new session: search path, and the advisory locks this store holds taken again."""
        from psycopg2 import sql

        conn = self._pg.connect(self.url, connect_timeout=10, **_KEEPALIVES)
        try:
            conn.autocommit = True  # transactions are explicit: BEGIN ... COMMIT
            cur = conn.cursor()
            if self.schema is not None:
                if create:
                    cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                        sql.Identifier(self.schema)))
                cur.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
            for key, name in self._locks.items():
                cur.execute("SELECT pg_try_advisory_lock(%s)", (key,))
                if not cur.fetchone()[0]:
                    raise StateError(
                        f"lost the lock of {name!r} on {self.describe()} while the connection "
                        "was down, and another run holds it now",
                        hint="this run stops here; the other one carries on")
        except BaseException:
            conn.close()
            raise
        self._conn, self._cur, self._statements, self._open = conn, cur, {}, False
        if not create:
            self.reconnects += 1

    def _lost(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the session is gone (as opposed to a statement refused)."""
        if isinstance(exc, self._pg.InterfaceError):
            return True
        if self._conn is None or self._conn.closed:
            return True
        code = getattr(exc, "pgcode", None) or ""
        return code.startswith("08") or code in _ENDED

    def _discard(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(self._pg.Error):  # it is already gone
                self._conn.close()
        self._conn = self._cur = None
        self._open = False

    def _call(self, action: Callable[[], T], *, restore: bool = True) -> T:
        """``action()`` on a live session, retried (:attr:`retry`) while the connection breaks.
        ``restore``: first reopen the open transaction on a new session (journal replayed)."""

        def once() -> T:
            try:
                if self._conn is None or self._conn.closed:
                    self._connect()
                if restore and self._in_tx and not self._open:
                    self._cur.execute("BEGIN")
                    self._open = True
                    for sql, params, bulk in self._journal:
                        self._run(sql, params, bulk)
                    if self._journal:
                        log.info("state store %s: reconnected; ran the %d statements of the "
                                 "open transaction again", self.describe(), len(self._journal))
                return action()
            except self._pg.Error as exc:
                text = " ".join(str(exc).split()) or type(exc).__name__
                if not self._lost(exc):
                    raise StateError(f"state store {self.describe()}: {text}") from exc
                self._discard()
                raise StateUnavailableError(
                    f"lost the connection to the state store {self.describe()}: {text}"
                    ) from exc

        return self.retry.call(once, what="", service=STATE_STORE)

    # -- statements ----------------------------------------------------------------------------
    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("?", "%s")

    def _run(self, sql: str, params: Sequence[Any], bulk: bool) -> Any:
        """Run one statement (``bulk``: once per row of ``params``) on the current session."""
        if not bulk:
            self._cur.execute(self._sql(sql), tuple(params))
        elif sql.startswith("INSERT") and _VALUES.search(sql):
            self._extras.execute_values(self._cur, self._sql(_VALUES.sub("VALUES %s", sql)),
                                        params, page_size=_PAGE)
        else:
            name = self._prepared(sql)
            marks = ", ".join(["%s"] * len(params[0]))
            self._extras.execute_batch(self._cur, f"EXECUTE {name} ({marks})", params,
                                       page_size=_PAGE)
        return self._cur

    def _journaled(self, sql: str, params: Sequence[Any], bulk: bool) -> Any:
        writes = bulk or not sql.lstrip().upper().startswith("SELECT")

        def action() -> Any:
            cur = self._run(sql, params, bulk)
            if self._in_tx and writes:  # (a read's answer is in: it needs no second run)
                self._journal.append((sql, params, bulk))
                self._wrote = True
            return cur

        return self._call(action)

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._journaled(sql, tuple(params), False)

    def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._journaled(sql, rows, True)

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

    # -- transactions --------------------------------------------------------------------------
    def _begin(self) -> None:
        self._in_tx, self._open, self._journal, self._wrote = True, False, [], False
        try:
            self._call(lambda: None)  # a session with the transaction open
        except BaseException:
            self._end()
            raise

    def _commit(self) -> None:
        try:
            if not self._wrote:
                self._commit_reads()
                return
            while True:
                xid = self._call(self._xid)
                try:
                    self._cur.execute("COMMIT")
                    self._open = False
                    return
                except self._pg.Error as exc:
                    if not self._lost(exc):
                        raise StateError(f"state store {self.describe()}: "
                                         f"{str(exc).strip()}") from exc
                    self._discard()
                if self._call(functools.partial(self._outcome, xid), restore=False) == "committed":
                    log.info("state store %s: the connection broke during COMMIT, which had "
                             "succeeded", self.describe())
                    return
                log.warning("state store %s: the connection broke during COMMIT, which did not "
                            "happen; running the transaction again", self.describe())
        finally:
            self._end()

    def _commit_reads(self) -> None:
        """COMMIT of a transaction that only read: its answers are in; a lost COMMIT loses
        nothing."""
        try:
            self._cur.execute("COMMIT")
            self._open = False
        except self._pg.Error as exc:
            if not self._lost(exc):
                raise StateError(f"state store {self.describe()}: {str(exc).strip()}") from exc
            self._discard()

    def _xid(self) -> int:
        self._cur.execute("SELECT txid_current()")
        return int(self._cur.fetchone()[0])

    def _outcome(self, xid: int) -> str:
        """What became of transaction ``xid``: committed or aborted (in progress: retried)."""
        self._cur.execute("SELECT txid_status(%s)", (xid,))
        status = self._cur.fetchone()[0]
        if status == "in progress":  # its old session has not noticed it is gone yet
            raise StateUnavailableError(
                f"state store {self.describe()}: transaction {xid}, whose COMMIT lost its "
                "answer, is still in progress")
        if status not in ("committed", "aborted"):
            raise StateError(f"state store {self.describe()}: cannot tell whether transaction "
                             f"{xid}, whose COMMIT lost its answer, committed ({status})",
                             hint="rerun: every step checks the chain before acting again")
        return str(status)

    def _rollback(self) -> None:
        try:
            if self._open and self._conn is not None and not self._conn.closed:
                try:
                    self._cur.execute("ROLLBACK")
                except self._pg.Error:  # a lost connection has nothing to undo
                    self._discard()
        finally:
            self._end()

    def _end(self) -> None:
        self._in_tx, self._open, self._journal, self._wrote = False, False, [], False

    # -- named locks ---------------------------------------------------------------------------
    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        digest = hashlib.sha256(f"cic-seeding:{self.schema}:{name}".encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        with self._lock:
            got = self._execute("SELECT pg_try_advisory_lock(?)", (key,)).fetchone()[0]
            if got:
                self._locks[key] = name
        if not got:
            raise StateError(f"{name!r} is already running against {self.describe()}",
                             hint="wait for it to finish or stop it, then run again")
        try:
            yield
        finally:
            with self._lock:
                del self._locks[key]
                if self._conn is not None and not self._conn.closed:
                    try:
                        self._cur.execute("SELECT pg_advisory_unlock(%s)", (key,))
                    except self._pg.Error:  # gone with its session: nothing to unlock
                        self._discard()
