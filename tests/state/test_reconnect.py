"""The PostgreSQL state store rides out a lost connection, each write applied exactly once.

Every test runs on a private PostgreSQL cluster (tests/pg.py), never the shared server: they
restart it, stop it, or cut connections at a COMMIT with a proxy in front of it. What is
counted after each: users added once (and ``add_users`` said so once), registrations
submitted once (``attempts`` 1), transactions sent once (``sends`` 1), payments planned once
-- the counters and counts a transaction run twice would double.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cic_seeding.errors import StateError
from cic_seeding.state import FUND, REGISTER, OutTx, StateStore, Status
from cic_seeding.state.postgres import PostgresStateStore
from tests.pg import PrivatePostgres, private_postgres

IMPORTER, CHAIN = "eth", "1:abcd"
SENDER = "0x" + "5e" * 20


@pytest.fixture(scope="module")
def postgres() -> Iterator[PrivatePostgres]:
    with private_postgres() as pg:
        yield pg


@pytest.fixture
def schema() -> str:
    return f"r_{uuid.uuid4().hex[:12]}"


def address(i: int) -> str:
    return "0x" + f"{i:040x}"


def tx_hash(i: int) -> str:
    return "0x" + f"{i:064x}"


class Work:
    """Batches of users taken through every kind of write the import and sync make, and the
    counts a test checks them by."""

    def __init__(self, store: StateStore, size: int = 20) -> None:
        self.store, self.size = store, size
        self.batches = self.added = self.planned = 0

    def batch(self) -> None:
        first = self.batches * self.size
        users = [(i, address(i)) for i in range(first, first + self.size)]
        self.added += self.store.add_users(IMPORTER, users)
        with self.store.transaction():  # several calls in one transaction, as the outbox does
            self.store.record_txs([OutTx(tx_hash(i), CHAIN, SENDER, i, "0x01", REGISTER, a,
                                         tx_hash(i)) for i, a in users])
            self.store.mark_submitted(IMPORTER, [(a, REGISTER, tx_hash(i), None)
                                                 for i, a in users])
        self.store.mark_txs_sent([tx_hash(i) for i, _ in users], time.time())
        self.planned += self.store.plan_payments(IMPORTER, [(a, FUND, 5) for _, a in users])
        self.batches += 1

    def check(self) -> None:
        """Every user, registration, send and payment exactly once."""
        total = self.batches * self.size
        users = self.store.users(IMPORTER)
        assert [u.index for u in users] == list(range(total))
        assert self.added == total and self.planned == total
        assert {u.status for u in users} == {Status.SUBMITTED}
        assert {u.attempts for u in users} == {1}
        txs = self.store.txs(CHAIN)
        assert len(txs) == total and {t.sends for t in txs} == {1}
        assert len(self.store.payments(IMPORTER)) == total


def open_store(pg: PrivatePostgres, schema: str, url: str | None = None) -> PostgresStateStore:
    return PostgresStateStore(url or pg.url(), schema=schema)


def test_a_restart_in_the_middle_of_a_transaction_is_ridden_out(
        postgres: PrivatePostgres, schema: str) -> None:
    store = open_store(postgres, schema)
    try:
        work = Work(store)
        work.batch()
        users = [(i, address(i)) for i in range(100, 110)]
        with store.transaction():
            assert store.add_users(IMPORTER, users) == 10
            store.mark_submitted(IMPORTER, [(a, REGISTER, tx_hash(i), None) for i, a in users])
            postgres.restart()  # the server rolls this transaction back
            store.mark_txs_sent([tx_hash(1)], 1.0)  # reconnects, runs the two above again
            store.plan_payments(IMPORTER, [(a, FUND, 7) for _, a in users])
        assert store.reconnects == 1
        work.batch()
        assert {u.attempts for u in store.users(IMPORTER)} == {1}
        assert store.txs(CHAIN, hashes=[tx_hash(1)])[0].sends == 2  # the batch's and ours
        assert len(store.payments(IMPORTER)) == 50
        assert store.counts(IMPORTER)[Status.SUBMITTED] == 50
    finally:
        store.close()


def test_work_going_on_through_a_restart_finishes_with_every_record_once(
        postgres: PrivatePostgres, schema: str) -> None:
    store = open_store(postgres, schema)
    work = Work(store)
    started, restarted = threading.Event(), threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            after = 0
            while after < 5:  # five batches once the restart is over
                work.batch()
                if work.batches == 3:
                    started.set()
                if restarted.is_set():
                    after += 1
                assert work.batches < 10_000, "the restart never came"
        except BaseException as exc:
            failed.append(exc)
            started.set()

    worker = threading.Thread(target=run)
    worker.start()
    try:
        assert started.wait(60)
        postgres.restart()
    finally:
        restarted.set()
        worker.join(180)
    try:
        assert not worker.is_alive() and not failed, failed
        assert store.reconnects >= 1
        work.check()
    finally:
        store.close()


class _Retried(logging.Handler):
    """Sets ``event`` when the store logs a retry after a lost connection."""

    def __init__(self, event: threading.Event) -> None:
        super().__init__(logging.WARNING)
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        if "state store" in record.getMessage() and "retry" in record.getMessage():
            self.event.set()


def test_a_server_down_for_a_while_is_waited_for(postgres: PrivatePostgres,
                                                 schema: str) -> None:
    store = open_store(postgres, schema)
    work = Work(store)
    work.batch()
    retried = threading.Event()
    handler = _Retried(retried)
    remote_log = logging.getLogger("cic_seeding.remote")
    level = remote_log.level  # an earlier test's CLI run may have left the root at ERROR
    remote_log.setLevel(logging.WARNING)
    remote_log.addHandler(handler)
    failed: list[BaseException] = []

    def run() -> None:
        try:
            work.batch()
        except BaseException as exc:
            failed.append(exc)

    postgres.stop()
    worker = threading.Thread(target=run)
    try:
        worker.start()
        assert retried.wait(60), "the store never retried"
    finally:
        postgres.start()
        worker.join(180)
        remote_log.removeHandler(handler)
        remote_log.setLevel(level)
    try:
        assert not worker.is_alive() and not failed, failed
        work.check()
    finally:
        store.close()


# --- a COMMIT whose answer is lost ------------------------------------------------------------

_SSL_OR_GSS = (80877103, 80877104)
_COMMIT_DONE = b"C\x00\x00\x00\x0bCOMMIT\x00"  # CommandComplete "COMMIT"


class CommitCutter:
    """A TCP proxy in front of PostgreSQL that, when armed, cuts its client off at the next
    ``COMMIT``: ``before`` the server gets it (the server aborts the transaction) or ``after``
    the server has committed and answered (the client never hears)."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.mode: str | None = None
        self.cut = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self) -> str:
        return (f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
                "?sslmode=disable&gssencmode=disable")

    def arm(self, mode: str) -> None:
        self.cut.clear()
        self.mode = mode

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            swallow = threading.Event()
            threading.Thread(target=self._down, args=(client, server, swallow),
                             daemon=True).start()
            threading.Thread(target=self._up, args=(client, server, swallow),
                             daemon=True).start()

    def _hang_up(self, *socks: socket.socket) -> None:
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self.cut.set()

    def _down(self, client: socket.socket, server: socket.socket,
              swallow: threading.Event) -> None:
        """Client to server, message by message (to find the COMMIT)."""
        buf, typed = b"", False
        while True:
            try:
                data = client.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            while True:
                head = 5 if typed else 4
                if len(buf) < head:
                    break
                size = int.from_bytes(buf[head - 4:head], "big") + (1 if typed else 0)
                if len(buf) < size:
                    break
                message, buf = buf[:size], buf[size:]
                if not typed:
                    typed = int.from_bytes(message[4:8], "big") not in _SSL_OR_GSS
                elif (message[:1] == b"Q" and message[5:].rstrip(b"\0") == b"COMMIT"
                      and self.mode is not None):
                    mode, self.mode = self.mode, None
                    if mode == "before":
                        self._hang_up(client, server)
                        return
                    swallow.set()
                try:
                    server.sendall(message)
                except OSError:
                    return

    def _up(self, client: socket.socket, server: socket.socket,
            swallow: threading.Event) -> None:
        """Server to client; once swallowing, nothing more reaches the client."""
        seen = b""
        while True:
            try:
                data = server.recv(65536)
            except OSError:
                return
            if not data:
                return
            if swallow.is_set():
                seen += data
                if _COMMIT_DONE in seen:  # committed: hang up without telling the client
                    self._hang_up(client, server)
                    return
                continue
            try:
                client.sendall(data)
            except OSError:
                return


@pytest.fixture
def cutter(postgres: PrivatePostgres) -> Iterator[CommitCutter]:
    proxy = CommitCutter(postgres.port)
    yield proxy
    proxy.close()


def test_a_commit_whose_answer_is_lost_is_not_run_again(
        postgres: PrivatePostgres, schema: str, cutter: CommitCutter,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "cic_seeding.state")
    store = open_store(postgres, schema, cutter.url())
    try:
        work = Work(store)
        work.batch()
        hashes = [tx_hash(i) for i in range(20)]
        cutter.arm("after")
        store.mark_txs_sent(hashes, 2.0)  # sends + 1: run twice, it would count 2
        assert cutter.cut.is_set()
        assert store.reconnects == 1
        assert {t.sends for t in store.txs(CHAIN, hashes=hashes)} == {2}
        assert "which had succeeded" in caplog.text
        cutter.arm("after")
        users = [(i, address(i)) for i in range(20, 30)]
        assert store.add_users(IMPORTER, users) == 10  # the count of the one real insert
        assert store.reconnects == 2
        assert store.counts(IMPORTER)[Status.PENDING] == 10
    finally:
        store.close()


def test_a_commit_that_never_reached_the_server_is_run_again_once(
        postgres: PrivatePostgres, schema: str, cutter: CommitCutter,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "cic_seeding.state")
    store = open_store(postgres, schema, cutter.url())
    try:
        users = [(i, address(i)) for i in range(20)]
        store.add_users(IMPORTER, users)
        cutter.arm("before")
        with store.transaction():
            store.mark_submitted(IMPORTER, [(a, REGISTER, tx_hash(i), None) for i, a in users])
            planned = store.plan_payments(IMPORTER, [(a, FUND, 3) for _, a in users])
        assert cutter.cut.is_set() and planned == 20
        assert "which did not happen; running the transaction again" in caplog.text
        assert {u.attempts for u in store.users(IMPORTER)} == {1}
        assert len(store.payments(IMPORTER)) == 20
    finally:
        store.close()


# --- the named locks ----------------------------------------------------------------------------


def test_a_named_lock_is_taken_again_after_a_restart(postgres: PrivatePostgres,
                                                     schema: str) -> None:
    first, second = open_store(postgres, schema), open_store(postgres, schema)
    try:
        with first.exclusive("sync-eth"):
            postgres.restart()
            first.add_users(IMPORTER, [(0, address(0))])  # reconnects, locks again
            with pytest.raises(StateError, match="already running"), \
                    second.exclusive("sync-eth"):
                pass
        with second.exclusive("sync-eth"):  # released at the end of the block
            pass
    finally:
        first.close()
        second.close()


def test_a_named_lock_another_run_took_meanwhile_stops_the_run(
        postgres: PrivatePostgres, schema: str) -> None:
    first = open_store(postgres, schema)
    second: Any = None
    try:
        with first.exclusive("sync-eth"):
            postgres.restart()
            second = open_store(postgres, schema)
            with second.exclusive("sync-eth"):
                for _ in range(2):  # refused while its block runs: the lock is not its own
                    with pytest.raises(StateError, match="lost the lock of 'sync-eth'"):
                        first.add_users(IMPORTER, [(0, address(0))])
        assert first.counts(IMPORTER)[Status.PENDING] == 0  # nothing it wrote got in
    finally:
        first.close()
        if second is not None:
            second.close()
