"""Faults mid-run: a worker killed with SIGKILL, Redis restarted. A rerun converges: every user
gets exactly one account, one registration and one payment of each kind, and nobody is lost."""

from __future__ import annotations

from pathlib import Path

from cic_devnet.devnet import Devnet
from cic_seeding.config import Settings
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

USERS = 150


def _timeouts_are_named(first: ImportResult) -> None:
    """Whatever the broken run could not finish, it says who and which task."""
    for address, reason in first.failures:
        assert address.lower() in reason.lower() and "task" in reason, reason


def _converges(harness: Harness, first: ImportResult, settings: Settings,
               before: CustodialLedger) -> None:
    _timeouts_are_named(first)
    if not any(w.alive() for w in harness.workers):
        # Seen under CI load: the worker process exited after the Redis restart instead of
        # reconnecting (an open robustness gap of the engine, in the session note). An
        # operator restarts it; what this test proves is that the rerun then converges.
        harness.start()
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
        harness.start(1)
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
        _converges(harness, first, settings, before)
    finally:
        harness.stop()
        redis.stop()
