"""An engine without PostgreSQL and Redis that outlives the process starting it: one worker
process on SQLite, its broker and replies files in a spool directory (``demo --keep``).

The custodial pipeline through it from another process that touches neither PostgreSQL nor
Redis; a reply that waits for a client that was not listening; messages taken once each by
competing consumers and never half-written; no reply for a channel nobody listens on.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from kombu import Connection

from cic_devnet.custodial.devnet import SPOOL_DIR, SQLITE_FILE, EngineOptions
from cic_devnet.devnet import Devnet, devnet_up
from cic_seeding.custodial import TASK_STATUS, engine_client
from cic_seeding.custodial.spool import (
    SpoolClient,
    SpoolPublisher,
    celery_settings,
    make_spool,
    spool_dir,
)
from cic_seeding.errors import CustodialUnavailableError, UsageError
from cic_seeding.sync.run import run_sync
from cic_seeding.sync.syncer import SyncOptions
from cic_seeding.verify import VerifyOptions, run_verify
from tests.conftest import devnet_settings
from tests.custodial.world import (
    assert_each_paid_once,
    make_data,
    read_custodial_ledger,
    run_import,
    wait_for,
)


@pytest.fixture(scope="module")
def spooled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    """A devnet whose engine runs without PostgreSQL and Redis in a process of its own."""
    devnet = devnet_up(tmp_path_factory.mktemp("spooled") / "devnet", detach=True,
                       custodial=True, custodial_options=EngineOptions(embedded=True))
    (worker,) = devnet.info["custodial"]["workers"]
    engine = psutil.Process(worker["pid"])
    try:
        yield devnet
    finally:
        devnet.stop()
    assert not engine.is_running() or engine.status() == psutil.STATUS_ZOMBIE, \
        "devnet_down left the engine running"


def test_30_custodial_users_through_an_engine_process_on_files(
        spooled: Devnet, tmp_path: Path, no_postgresql_no_redis: list[str]) -> None:
    engine = spooled.info["custodial"]
    (worker,) = engine["workers"]
    proc = psutil.Process(worker["pid"])
    assert worker["pid"] != os.getpid() and "cic_devnet.custodial" in " ".join(proc.cmdline())
    assert not engine.get("embedded") and spooled.engine is None
    assert engine["broker_url"] == f"filesystem://localhost{spooled.directory / SPOOL_DIR}"
    assert engine["db_url"] == f"sqlite:///{spooled.directory / SQLITE_FILE}"
    assert (spooled.directory / SPOOL_DIR).stat().st_mode & 0o777 == 0o700

    settings = devnet_settings(spooled, make_data(tmp_path, 30, seed=717))
    before = read_custodial_ledger(settings)
    result = run_import(settings)
    assert result.ok and result.confirmed == 30, result.render_text()
    sync = run_sync(settings, "cic_eth", SyncOptions(timeout=120, poll=0.1))
    assert sync.ok and sync.done == 30, sync.render_text()
    assert_each_paid_once(settings, 30, before)
    verify = run_verify(settings, VerifyOptions(importer="cic_eth"))
    assert verify.ok, verify.render_text()
    assert verify.checks["custodial_key"].ok == 30, verify.checks["custodial_key"].line()
    assert no_postgresql_no_redis == []
    # every reply was taken by its client, every client unsubscribed
    assert list((spooled.directory / SPOOL_DIR / "replies").iterdir()) == []


def test_a_reply_waits_for_a_client_that_was_not_listening(spooled: Devnet,
                                                          tmp_path: Path) -> None:
    settings = devnet_settings(spooled, tmp_path / "data")
    client = engine_client(settings)
    assert isinstance(client, SpoolClient)
    try:
        client.open()
        (task_id,) = client.send(TASK_STATUS, [{}])
        inbox = spool_dir(client.broker_url) / "replies" / client.channel
        wait_for(lambda: (inbox / f"{task_id}.json").is_file(), timeout=30,
                 what="the engine's reply file")
        replies = client.collect([task_id], time.monotonic() + 5)
        assert replies[task_id].ok
        assert replies[task_id].result["registry"] == spooled.registry.lower()
        assert list(inbox.iterdir()) == []  # taken
    finally:
        client.close()
    assert not inbox.exists()  # unsubscribed


def test_no_reply_for_a_channel_nobody_listens_on(tmp_path: Path) -> None:
    url = make_spool(tmp_path / "spool")
    publisher = SpoolPublisher(url)
    message = json.dumps({"task_id": "t1", "task": "x", "status": "ok", "result": {}})
    assert publisher.publish("cic_custodial.reply.nobody", message) == 0
    assert publisher.publish("../escape", message) == 0
    (tmp_path / "spool" / "replies" / "cic_custodial.reply.someone").mkdir()
    assert publisher.publish("cic_custodial.reply.someone", message) == 1
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert written == [Path("spool/replies/cic_custodial.reply.someone/t1.json")]


def test_a_missing_spool_directory_is_named_at_once(tmp_path: Path) -> None:
    client = SpoolClient(f"filesystem://localhost{tmp_path / 'gone'}", "q", timeout=60)
    try:
        with pytest.raises(CustodialUnavailableError,
                           match=r"spool directory .*/gone does not exist"):
            client.call(TASK_STATUS, {})
    finally:
        client.close()


def _connection(url: str) -> Connection:
    conf = celery_settings(url)
    return Connection(url, transport=conf["broker_transport"],
                      transport_options=conf["broker_transport_options"])


def test_messages_are_taken_once_each_and_never_half_written(tmp_path: Path) -> None:
    """Two producers and three consumers, each its own connection in one process, on one spool
    queue: every message arrives exactly once; a message still being written (its temporary
    name) is never taken. (kombu keeps one broker state per process: before SpoolChannel
    bound every connection's queue in the spool's table, a producer could publish before the
    table was written, and its messages went nowhere.)"""
    url = make_spool(tmp_path / "spool")
    partial = tmp_path / "spool" / "queue" / ".tmp-half"
    partial.write_bytes(b'{"body": "half')  # a producer caught mid-write
    sent = [f"{p}-{i}" for p in range(2) for i in range(150)]
    got: list[Any] = []
    lock = threading.Lock()
    done = threading.Event()

    def produce(p: int) -> None:
        with _connection(url) as conn, conn.SimpleQueue("work") as queue:
            for i in range(150):
                queue.put(f"{p}-{i}")

    def consume() -> None:
        from queue import Empty

        with _connection(url) as conn, conn.SimpleQueue("work") as queue:
            while not done.is_set():
                try:
                    message = queue.get(timeout=0.05)
                except Empty:
                    continue
                message.ack()
                with lock:
                    got.append(message.payload)
                    if len(got) >= len(sent):
                        done.set()

    threads = [threading.Thread(target=produce, args=(p,)) for p in range(2)]
    threads += [threading.Thread(target=consume) for _ in range(3)]
    for t in threads:
        t.start()
    done.wait(60)
    done.set()
    for t in threads:
        t.join(30)
    twice = sorted(m for m, n in Counter(got).items() if n > 1)
    missing = sorted(set(sent) - set(got))
    left = {d.name: sorted(f.name for f in d.iterdir()) for d in (tmp_path / "spool").iterdir()
            if d.is_dir()}
    assert (missing, twice) == ([], []), f"{len(got)} taken of {len(sent)}; left: {left}"
    assert partial.read_bytes() == b'{"body": "half'  # left alone
    assert [p.name for p in (tmp_path / "spool" / "queue").iterdir()] == [".tmp-half"]


def test_the_ussd_gateway_refuses_an_engine_without_redis(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"the USSD gateway cannot use a custodial engine "
                       r"without Redis"):
        devnet_up(tmp_path / "devnet", detach=True, ussd=True,
                  custodial_options=EngineOptions(embedded=True))
    assert not (tmp_path / "devnet").exists()  # refused before anything started
