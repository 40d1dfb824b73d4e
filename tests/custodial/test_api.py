"""The engine's API through a real worker, and bad input: each failure is one clear error.

Unreachable broker, no worker on the queue, a reply that never comes, a reply nobody
understands, a wrong database. (PostgreSQL here trusts local users, so a wrong *password*
cannot be shown; a wrong user and an unreachable port stand in for it.)
"""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis

from cic_devnet.custodial.storage import Storage
from cic_seeding.custodial import (
    TASK_BALANCE,
    TASK_CREATE,
    TASK_CREATE_MANY,
    TASK_HAVE,
    TASK_STATUS,
    TASK_TRANSFER,
    TASK_TX_STATUS,
    CustodialClient,
)
from cic_seeding.datadir import DataDir
from cic_seeding.errors import (
    CustodialError,
    CustodialTimeoutError,
    CustodialUnavailableError,
    ServiceError,
)
from cic_seeding.importers import cic_eth
from cic_seeding.outbox import TxArchive
from cic_seeding.state import open_state_store
from cic_seeding.verify.base import NOT_IMPORTED, CheckContext, VerifyUser
from cic_seeding.verify.checks.custodial import CustodialKeyCheck
from tests.custodial.world import (
    Harness,
    assert_engine_txs_archived,
    make_data,
    purge_queue,
    run_import,
    wait_for,
)
from tests.helpers import run_cli
from tests.pg import PG_URL


@pytest.fixture(scope="module")
def served(module_harness: Harness) -> Harness:
    module_harness.start(1)
    return module_harness


@pytest.fixture
def client(served: Harness) -> Iterator[CustodialClient]:
    c = CustodialClient(served.broker_url, served.setup.queue, timeout=30)
    yield c
    c.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_create_transfer_balance_through_the_worker(client: CustodialClient) -> None:
    payer = client.call(TASK_CREATE, {"request_id": "api-payer", "gas_gift": 10**16,
                                      "faucet": True})
    payee = client.call(TASK_CREATE, {"request_id": "api-payee"})
    assert client.call(TASK_CREATE, {"request_id": "api-payee"})["address"] == payee["address"]
    ids = list(payer["txs"].values())
    wait_for(lambda: all(t["status"] == "mined" for t in
                         client.call(TASK_TX_STATUS, {"tx_ids": ids})["txs"]),
             timeout=30, what="the payer's transactions mined")
    funded = client.call(TASK_BALANCE, {"address": payer["address"]})
    assert funded["native"] == 10**16 and funded["balance"] > 0
    sent = client.call(TASK_TRANSFER, {"sender": payer["address"],
                                       "recipient": payee["address"], "amount": 7,
                                       "request_id": "api-pay"})
    wait_for(lambda: client.call(TASK_TX_STATUS, {"tx_ids": [sent["tx_id"]]})["txs"][0][
        "status"] == "mined", timeout=30, what="the transfer mined")
    assert client.call(TASK_BALANCE, {"address": payee["address"]})["balance"] == 7
    held = client.call(TASK_HAVE, {"addresses": [payer["address"], "0x" + "00" * 20]})
    assert held["have"] == {payer["address"]: True, "0x" + "00" * 20: False}
    with pytest.raises(CustodialError, match="holds no key for 0x0000"):
        client.call(TASK_TRANSFER, {"sender": "0x" + "00" * 20,
                                    "recipient": payee["address"], "amount": 1})


def test_unreachable_broker(served: Harness, tmp_path: Path) -> None:
    data = make_data(tmp_path, 3, seed=31)
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    with pytest.raises(CustodialUnavailableError,
                       match=f"cannot reach the custodial engine's broker {url}"):
        run_import(served.settings(data, custodial_broker_url=url))
    cli = run_cli("import", "cic_eth", "--dir", str(data), "--devnet",
                  str(served.devnet.directory), env={"CIC_CUSTODIAL_BROKER_URL": url})
    assert cli.returncode == 1
    assert cli.stderr.strip().splitlines()[-1].startswith(
        f"error: cannot reach the custodial engine's broker {url}"), cli.stderr


def test_no_worker_on_the_queue(served: Harness, tmp_path: Path) -> None:
    queue = f"nobody_{uuid.uuid4().hex[:8]}"
    settings = served.settings(make_data(tmp_path, 3, seed=32), custodial_queue=queue,
                               custodial_timeout=2)
    try:
        with pytest.raises(CustodialTimeoutError,
                           match=r"no reply from the custodial engine about its status to task "
                           rf"\S+ \(cic_custodial.engine.status\) within 2s; is a worker "
                           rf"consuming queue '{queue}'"):
            run_import(settings)
    finally:
        purge_queue(served.broker_url, queue)


class _OldEngine(CustodialClient):
    """A client of an engine from before ``account.create_many``: its status lists no
    tasks, so the importer sends one ``account.create`` per user."""

    def call(self, task: str, kwargs: Mapping[str, Any], *, timeout: float | None = None,
             what: str = "") -> dict[str, Any]:
        result = super().call(task, kwargs, timeout=timeout, what=what)
        if task == TASK_STATUS:
            result.pop("tasks")
        return result


def _client(served: Harness, batch: bool, base: type[CustodialClient] = CustodialClient,
            timeout: float = 30) -> CustodialClient:
    """A client of ``served`` as ``base``, of an engine with create_many (``batch``) or one
    from before it."""
    cls = base if batch else type(f"Old{base.__name__}", (_OldEngine, base), {})
    return cls(served.broker_url, served.setup.queue, timeout=timeout)


def test_the_engine_lists_its_tasks_and_an_older_one_gets_a_task_per_user(
        served: Harness, tmp_path: Path) -> None:
    # (the other path, create_many, is every other import of these tests)
    status = CustodialClient(served.broker_url, served.setup.queue).call(TASK_STATUS, {})
    assert {TASK_CREATE, TASK_CREATE_MANY, TASK_HAVE, TASK_STATUS} <= set(status["tasks"])
    old = _client(served, batch=False)
    worker_log = len(served.workers[0].log())
    settings = served.settings(make_data(tmp_path, 4, seed=36))
    result = run_import(settings, client=old)
    assert result.ok and result.confirmed == 4, result.render_text()
    lines = served.workers[0].log()[worker_log:].splitlines()
    received = [line for line in lines if "Task cic_custodial.account." in line
                and " received" in line]
    assert len(received) == 4 and not any("create_many" in line for line in received)


class _Meddler(CustodialClient):
    """Loses every create request (sent to a queue nobody consumes) and puts a reply nobody
    understands on the channel for the first one."""

    void = f"void_{uuid.uuid4().hex[:8]}"

    def send(self, task: str, requests: Sequence[Mapping[str, Any]]) -> list[str]:
        if task not in (TASK_CREATE, TASK_CREATE_MANY):
            return super().send(task, requests)
        queue, self.queue = self.queue, self.void
        try:
            ids = super().send(task, requests)
        finally:
            self.queue = queue
        if not getattr(self, "_meddled", False):
            self._meddled = True
            r = redis.Redis.from_url(self.broker_url)
            r.publish(self.channel, json.dumps({"task_id": ids[0], "task": task,
                                                "status": "bogus"}))
            r.close()
        return ids


@pytest.mark.parametrize("batch", [True, False], ids=["create_many", "create"])
def test_a_reply_that_never_comes_or_makes_no_sense_fails_the_user_clearly(
        served: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: bool) -> None:
    monkeypatch.setattr(cic_eth.CicEthImporter, "create_chunk", 2)  # users 1-2, then 3
    settings = served.settings(make_data(tmp_path, 3, seed=33), custodial_timeout=3)
    client = _client(served, batch, _Meddler, timeout=3)
    try:
        result = run_import(settings, client=client)
    finally:
        purge_queue(served.broker_url, _Meddler.void)
    assert not result.ok and result.failed == 3
    reasons = dict(result.failures)
    users = [u.address for u in DataDir(settings.data_dir).users()]
    bogus, silent = (users[:2], users[2:]) if batch else (users[:1], users[1:])
    for user in bogus:  # the first request (of one user, or of two) got the bogus reply
        assert "got a reply this client does not understand (status 'bogus')" in \
            reasons[user], reasons[user]
    task = TASK_CREATE_MANY if batch else TASK_CREATE
    for user in silent:  # asked twice (the second time after half the timeout), never answered
        assert re.match(rf"no reply from the custodial engine for user {user} to tasks "
                        rf"\S+, \S+ \({re.escape(task)}\) within 3s; is a worker "
                        "consuming queue", reasons[user]), reasons[user]


class _Renamer(CustodialClient):
    """Sends the create requests under a task name no engine knows."""

    def send(self, task: str, requests: Sequence[Mapping[str, Any]]) -> list[str]:
        if task in (TASK_CREATE, TASK_CREATE_MANY):
            task = "cic_custodial.account.nope"
        return super().send(task, requests)


@pytest.mark.parametrize("batch", [True, False], ids=["create_many", "create"])
def test_an_unknown_task_is_a_clear_error(served: Harness, tmp_path: Path,
                                          batch: bool) -> None:
    settings = served.settings(make_data(tmp_path, 2, seed=34), custodial_timeout=10)
    result = run_import(settings, client=_client(served, batch, _Renamer, timeout=10))
    assert result.failed == 2
    for user, reason in result.failures:
        assert re.match(rf"the custodial engine could not create an account for user {user} "
                        r"\(task \S+\): NotRegistered: cic_custodial.account.nope", reason), reason
    assert "Received unregistered task of type 'cic_custodial.account.nope'" in \
        served.workers[0].log()


def test_create_many_through_the_worker_answers_each_request(client: CustodialClient
                                                             ) -> None:
    """One task, many requests: each its own answer in order; a bad one costs only itself;
    asked again, the same accounts."""
    requests: list[Any] = [{"request_id": "many-1", "gas_gift": 10**15, "faucet": True},
                           {"request_id": "bad id!"}, "not an object",
                           {"request_id": "many-2", "gas_gift": -1},
                           {"request_id": "many-2"}, {"request_id": "many-1"}]
    first = client.call(TASK_CREATE_MANY, {"requests": requests})["accounts"]
    assert [a.get("request_id") for a in first] == ["many-1", "bad id!", None, "many-2",
                                                    "many-2", "many-1"]
    assert "is not 1-200 characters" in first[1]["error"]
    assert "is not an object" in first[2]["error"]
    assert first[3]["error"] == "gas gift -1 is negative"
    assert first[0]["created"] and first[4]["created"]
    assert set(first[0]["txs"]) == {"register", "gas", "faucet"} and \
        set(first[4]["txs"]) == {"register"}
    assert first[5] == first[0]  # the same request id twice in one task: one account
    again = client.call(TASK_CREATE_MANY, {"requests": [{"request_id": "many-2"},
                                                        {"request_id": "many-1"}]})
    assert [(a["address"], a["created"]) for a in again["accounts"]] == [
        (first[4]["address"], False), (first[0]["address"], False)]
    single = client.call(TASK_CREATE, {"request_id": "many-1"})  # (asks for no gas, faucet)
    assert (single["address"], single["txs"]) == (first[0]["address"],
                                                  {"register": first[0]["txs"]["register"]})
    with pytest.raises(CustodialError, match="create requests must be a list"):
        client.call(TASK_CREATE_MANY, {"requests": {"request_id": "many-3"}})


def test_wrong_database_user_and_port(served: Harness) -> None:
    wrong_user = PG_URL.replace("postgres@", "nope@")
    with pytest.raises(CustodialError, match=r"cannot open the custodial database "
                       r"postgresql://nope@.*role \"nope\" does not exist.*custodial_db_url"):
        Storage(wrong_user)
    port = _closed_port()
    unreachable = f"postgresql://postgres@127.0.0.1:{port}/cic_seeding_test"
    with pytest.raises(CustodialUnavailableError, match=f"cannot reach the custodial database "
                       f"postgresql://postgres@127.0.0.1:{port}/"):
        Storage(unreachable)
    alone = f"alone_{uuid.uuid4().hex[:8]}"
    try:
        with pytest.raises(ServiceError, match=r"exited while starting: error: cannot open the "
                           r"custodial database postgresql://nope@"):
            served.start(1, CIC_CUSTODIAL_DB_URL=wrong_user, CIC_CUSTODIAL_QUEUE=alone)
    finally:
        purge_queue(served.broker_url, alone)


def test_custodial_key_check_asks_the_engine(client: CustodialClient, served: Harness,
                                             tmp_path: Path) -> None:
    held = client.call(TASK_CREATE, {"request_id": "check-held"})["address"]
    stranger, sovereign = "0x" + "ab" * 20, "0x" + "cd" * 20
    users = [VerifyUser(0, "0x" + "01" * 20, held, 1), VerifyUser(1, "0x" + "02" * 20,
                                                                 stranger, 1),
             VerifyUser(2, sovereign, sovereign, 1), VerifyUser(3, "0x" + "03" * 20, None, 1)]
    settings = served.settings(make_data(tmp_path, 1, seed=35))
    check = CustodialKeyCheck(CheckContext(settings, DataDir(settings.data_dir)))
    try:
        verdicts = check.verify(users)
    finally:
        check.close()
    # a sovereign user (its own key) is not the engine's: the check does not apply to it
    assert [verdicts[u.address].outcome for u in users] == ["ok", "failed", "not_applicable",
                                                           "failed"]
    assert verdicts[users[1].address].reason == \
        "the custodial engine holds no key for the user's address"
    assert verdicts[users[1].address].detail == stranger
    assert verdicts[users[3].address].reason == NOT_IMPORTED
    assert CustodialKeyCheck.unavailable(settings) is None
    bare = dataclasses.replace(settings, custodial_broker_url=None, custodial_queue=None)
    assert "no custodial engine is configured" in str(CustodialKeyCheck.unavailable(bare))


def test_the_engine_gives_the_bytes_the_archive_keeps_without_asking_the_node(
        served: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tx.status gives each transaction's bytes; the importer keeps those that hash to the
    mined transaction, so the node is asked for none of a plain run's."""
    asked: list[str] = []
    fetch_from_node = TxArchive._raws

    def spy(self: TxArchive, hashes: Sequence[str]) -> Any:
        asked.extend(hashes)
        return fetch_from_node(self, hashes)

    monkeypatch.setattr(TxArchive, "_raws", spy)
    settings = served.settings(make_data(tmp_path, 6, seed=37))
    result = run_import(settings)
    assert result.ok and result.confirmed == 6, result.render_text()
    assert asked == []
    with open_state_store(settings) as store:
        targets = list(store.targets("cic_eth"))
    archived = assert_engine_txs_archived(settings, served.schema, targets)
    assert archived == {"register": 6, "gas": 6, "faucet": 6}
