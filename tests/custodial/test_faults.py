"""Faults mid-run: a worker killed with SIGKILL, Redis restarted. A rerun converges: every user
gets exactly one account, one registration and one payment of each kind, and nobody is lost.
A worker outlives its broker: Redis restarted under it, it reconnects (the same process)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2

from cic_devnet.devnet import Devnet
from cic_seeding.config import Settings
from cic_seeding.custodial import TASK_CREATE, CustodialClient
from cic_seeding.importers.base import ImportResult
from cic_seeding.sync.run import run_sync
from cic_seeding.sync.syncer import SyncOptions
from tests.custodial.world import (
    Background,
    CustodialLedger,
    Harness,
    RedisServer,
    assert_each_paid_once,
    make_data,
    read_custodial_ledger,
    run_import,
    wait_for,
)
from tests.pg import PG_URL

USERS = 150


def _timeouts_are_named(first: ImportResult) -> None:
    """Whatever the broken run could not finish, it says who and which task."""
    for address, reason in first.failures:
        assert address.lower() in reason.lower() and "task" in reason, reason


def _converges(harness: Harness, first: ImportResult, settings: Settings,
               before: CustodialLedger) -> None:
    _timeouts_are_named(first)
    harness.ready()  # the worker is back on the broker (Celery reconnects after 2, 4, 6 ... s)
    second = run_import(settings)
    assert second.ok, second.render_text()
    assert second.done_before + second.confirmed == USERS
    sync = run_sync(settings, "cic_eth", SyncOptions(timeout=120, poll=0.1))
    assert sync.ok and sync.done == USERS, sync.render_text()
    assert_each_paid_once(settings, USERS, before)
    assert harness.count("SELECT count(*) FROM accounts") == USERS  # no second account
    assert harness.count("SELECT count(*) FROM txs WHERE status <> 'mined'") == 0


def test_worker_killed_mid_run_then_rerun_converges(devnet: Devnet, tmp_path: Path,
                                                    pg_schema: str) -> None:
    # a Redis of its own: the killed worker's unacknowledged tasks stay in it, not in a
    # Redis other tests share
    redis = RedisServer.start_new(tmp_path)
    harness = Harness.prepare(devnet, tmp_path, pg_schema, broker_url=redis.url)
    try:
        harness.start(1)
        settings = harness.settings(make_data(tmp_path, USERS, seed=707), batch_size=USERS,
                                    custodial_timeout=6)
        before = read_custodial_ledger(settings)
        run = Background(settings)
        at_kill = wait_for(lambda: max(0, harness.count("SELECT count(*) FROM accounts") - 29),
                           timeout=60, what="30 accounts") + 29
        harness.workers[0].kill9()
        assert at_kill < USERS, "the worker was killed after the run, not during it"
        harness.start(1)  # a new worker carries on: queue, nonces, accounts are in PostgreSQL
        first = run.join(120)
        _converges(harness, first, settings, before)
    finally:
        harness.stop()
        redis.stop()


def test_redis_restarted_mid_run_then_rerun_converges(devnet: Devnet, tmp_path: Path,
                                                      pg_schema: str) -> None:
    redis = RedisServer.start_new(tmp_path)
    harness = Harness.prepare(devnet, tmp_path, pg_schema, broker_url=redis.url)
    try:
        (worker,) = harness.start(1)
        settings = harness.settings(make_data(tmp_path, USERS, seed=808), batch_size=USERS,
                                    custodial_timeout=6)
        before = read_custodial_ledger(settings)
        run = Background(settings)
        at_restart = wait_for(
            lambda: max(0, harness.count("SELECT count(*) FROM accounts") - 29),
            timeout=60, what="30 accounts") + 29
        redis.restart()
        assert at_restart < USERS, "Redis restarted after the run, not during it"
        first = run.join(120)
        assert worker.alive(), f"the worker exited after Redis restarted: {worker.log()[-3000:]}"
        _converges(harness, first, settings, before)
        assert harness.workers == [worker] and worker.alive()  # the same process throughout
    finally:
        harness.stop()
        redis.stop()


@contextmanager
def _request_blocked(harness: Harness, request_id: str) -> Iterator[None]:
    """An open PostgreSQL transaction holding ``request_id``'s account row: the worker's
    create task for it waits on the row (running, so unacknowledged) until the block ends."""
    conn = psycopg2.connect(PG_URL)
    try:
        with conn.cursor() as cur:
            cur.execute(f'SET search_path TO "{harness.schema}"')
            cur.execute("INSERT INTO accounts (address, request_id, sealed_key, created_at) "
                        "VALUES (%s, %s, %s, 0)", ("0x" + "ee" * 20, request_id, b"x"))
        yield
    finally:
        conn.rollback()
        conn.close()


def _waiting_on_a_lock(harness: Harness) -> int:
    return harness.count("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                         "AND strpos(query, 'INSERT INTO accounts') = 1")


def test_worker_outlives_redis_restarts_with_tasks_in_hand(devnet: Devnet, tmp_path: Path,
                                                           pg_schema: str) -> None:
    """Redis restarted while the worker holds an unacknowledged task and waits for more (the
    state in which kombu's cleanup used to end the process): the same worker reconnects and
    answers, every time."""
    redis = RedisServer.start_new(tmp_path)
    harness = Harness.prepare(devnet, tmp_path, pg_schema, broker_url=redis.url)
    client = CustodialClient(redis.url, harness.setup.queue, timeout=60)
    try:
        (worker,) = harness.start(1)
        for round_ in range(3):
            request_id = f"outlive-{round_}"
            with _request_blocked(harness, request_id):
                client.send(TASK_CREATE, [{"request_id": request_id}])
                wait_for(lambda: _waiting_on_a_lock(harness), timeout=30,
                         what="the create task waiting on its row")
                redis.restart()
                harness.ready()  # a round trip through the new Redis
                assert worker.alive(), worker.log()[-3000:]
            # the task in hand finishes (its ack is lost with the old Redis); asked again,
            # the engine answers with the account it made
            made = f"SELECT count(*) FROM accounts WHERE request_id = '{request_id}'"
            wait_for(lambda: harness.count(made), timeout=30, what="the account")  # noqa: B023
            again = client.call(TASK_CREATE, {"request_id": request_id})
            assert again["created"] is False
        assert harness.workers == [worker] and worker.alive()
        assert "Unrecoverable error" not in worker.log()
    finally:
        client.close()
        harness.stop()
        redis.stop()
