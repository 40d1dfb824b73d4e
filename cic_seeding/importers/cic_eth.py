"""The custodial importer (``cic_eth``): the custodial engine holds the users' keys.

Per user: ``cic_custodial.account.create`` with the generated address as request id (the
engine creates one account per request id, so a rerun never makes a second one); the engine
registers the new address in the AccountsIndex; once the registration is on chain the user is
confirmed and its person record goes under ``new/`` keyed by the new address, with that
address added to the target chain's identity. A whole batch of requests goes out at once and
the replies come back on this run's Redis callback channel, so many users are in flight. An
engine that offers ``cic_custodial.account.create_many`` (its status lists its tasks) gets
the requests :attr:`CicEthImporter.create_chunk` users to a task: one task and one database
transaction for them all instead of one each; an engine without it gets one
``account.create`` per user.

The same request asks the engine for the user's gas gift (``gas_gift``) and faucet payout:
the engine queues them after the registration (the faucet pays registered accounts only),
once per account, whatever the reruns. The faucet is asked for exactly when the syncer would
pay a sovereign user one: when it pays the run's token (``token_symbol``, default the
registry's DefaultToken) -- a faucet of another token is left alone, as for ``eth``.

The opening balance comes from the syncer (``cic-seed sync cic_eth``, :meth:`payment_scheme`)
once the registration is seen on chain, as a transfer the engine signs, exactly once per user
(:mod:`cic_seeding.sync.custodial`).

A request without a reply after half of ``custodial_timeout`` is sent once more (same request
id: the same account); one still without a reply at the timeout fails the user with an error
naming it and the task ids; a rerun asks again and gets the same account.

The engine's reply lists the transactions it queued for the account (registration, gas gift,
faucet payout); once they are mined (``cic_custodial.tx.status``) they are saved under
``tx/``, as the outbox saves the transactions this toolkit signs -- before the user is
confirmed, so a rerun of a user not confirmed saves them then. Their bytes come with the
engine's answer, kept when they hash to the mined transaction's hash (asking the node for
three transactions a user cost anvil as much as sending them); otherwise, or from an engine
that does not send them, they are fetched from the node by hash. One the engine has not mined
by the user's deadline, or the node does not have, costs a log line.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from Crypto.Hash import keccak
from eth_utils import is_address

from cic_seeding.chain.connect import checked_chain, connect
from cic_seeding.chain.registry import ACCOUNTS_INDEX, ADDRESS_ADDED, CicNetwork
from cic_seeding.config import Settings
from cic_seeding.custodial import (
    TASK_CREATE,
    TASK_CREATE_MANY,
    TASK_TX_STATUS,
    CustodialClient,
    Reply,
    engine_client,
    engine_status,
)
from cic_seeding.datadir import UserRow
from cic_seeding.errors import ChainError, CustodialError
from cic_seeding.importers._records import record_problem, write_new_records
from cic_seeding.importers.base import Importer, Outcome, Submission
from cic_seeding.outbox import TxArchive
from cic_seeding.outbox.archive import save
from cic_seeding.records.address import checksummed
from cic_seeding.remote import CUSTODIAL_ENGINE, poll
from cic_seeding.state import norm

log = logging.getLogger(__name__)

#: Seconds to wait for the engine's status answer when a run begins.
STATUS_TIMEOUT = 15.0
#: Seconds between asks of the AccountsIndex about every account still unregistered, whatever
#: its logs said (a log lost in a reorganisation, a node that serves no logs).
FULL_CHECK = 5.0


def _hashes_to(raw: Any, tx_hash: str) -> bool:
    """Whether ``raw`` (0x-hex) is the transaction ``tx_hash`` names."""
    try:
        body = bytes.fromhex(raw[2:]) if isinstance(raw, str) and raw[:2] in ("0x", "0X") \
            else None
    except ValueError:
        return False
    return body is not None and \
        "0x" + keccak.new(data=body, digest_bits=256).digest().hex() == tx_hash.lower()


#: What the engine's transaction kinds (in a create reply's ``txs``) are, for log lines.
TX_KINDS = {"register": "registration", "gas": "gas gift", "faucet": "faucet payout"}


class CicEthImporter(Importer):
    """Creates every generated user's account in the custodial engine."""

    name = "cic_eth"
    custody = "custodial"
    found_where = "made by the engine before"  # it answers a repeated request id with those
    service = CUSTODIAL_ENGINE
    in_flight = 4
    #: Users per ``account.create_many`` task: several tasks per batch, so that several
    #: workers (and a worker's threads) share a batch.
    create_chunk: ClassVar[int] = 50

    def __init__(self, settings: Settings, *, network: CicNetwork | None = None,
                 client: CustodialClient | None = None, **kw: Any) -> None:
        super().__init__(settings, **kw)
        self.network = network or connect(settings, signer=False)
        self.client = client or engine_client(settings)
        self.chain = checked_chain(self.network, self.settings)  # first: another chain misleads
        self.index = self.network.accounts_index
        self.timeout = settings.custodial_timeout
        self.gas_gift = settings.gas_gift
        self.faucet = False  # decided in begin(): does the faucet pay the run's token?
        self.create_many = False  # decided in begin(): does the engine take batch tasks?
        self._logs_from = 0  # the first block whose AddressAdded logs are still unread
        #: Addresses the index's AddressAdded logs named since the run began, newest last:
        #: hints of what to ask the index about, bounded (see _hint).
        self._hints: dict[str, None] = {}
        self.archive = TxArchive(self.data.tx, self.network.client.rpc)

    # -- primitives ----------------------------------------------------------------------
    def begin(self) -> None:
        """The engine answers and registers on this network; the syncer's cursor starts here."""
        self.network.check_chain_id(self.chain)
        self.client.open()
        status = engine_status(self.client, self.index, timeout=min(self.timeout,
                                                                    STATUS_TIMEOUT))
        tasks = status.get("tasks")
        self.create_many = isinstance(tasks, list) and TASK_CREATE_MANY in tasks
        token = self.network.token(self.settings.token_symbol)
        self.faucet = self.network.faucet_payout(token) > 0
        head = self.network.client.head()
        self.store.init_cursor(self.name, str(self.chain), head)
        self._logs_from = head + 1  # an account made by this run is registered after this


    @classmethod
    def payment_scheme(cls) -> str:
        """The syncer pays the opening balance only (gas and faucet came with the account),
        as a transfer signed by the custodial engine."""
        return "custodial"

    def _request(self, user: str) -> dict[str, Any]:
        """The create request of ``user`` (its generated address is the request id)."""
        return {"request_id": norm(user), "gas_gift": self.gas_gift, "faucet": self.faucet}

    def prepare(self, users: Sequence[UserRow]) -> Mapping[str, str]:
        return {u.address: reason for u in users if (reason := record_problem(self.data, u))}

    def sends(self, users: Sequence[UserRow]) -> list[str]:
        return [f"{len(users)} account creations to the custodial engine"]

    def done_on_chain(self, users: Sequence[UserRow]) -> Mapping[str, str | None]:
        # Only the engine knows a user's new address; asking it again (same request id) is
        # how a rerun finds an account made before.
        return {}

    def submit(self, users: Sequence[UserRow]) -> list[Submission]:
        if not self.create_many:
            ids = self.client.send(TASK_CREATE, [self._request(u.address) for u in users])
            return [Submission(u.address, t) for u, t in zip(users, ids, strict=True)]
        chunks = [users[i:i + self.create_chunk] for i in range(0, len(users), self.create_chunk)]
        ids = self.client.send(TASK_CREATE_MANY, [self._many(c) for c in chunks])
        return [Submission(u.address, t) for c, t in zip(chunks, ids, strict=True) for u in c]

    def _many(self, users: Sequence[Any]) -> dict[str, Any]:
        """The create_many request of ``users`` (rows or addresses)."""
        return {"requests": [self._request(getattr(u, "address", u)) for u in users]}

    def outcomes(self, submissions: Sequence[Submission]) -> list[Outcome]:
        deadline, asked, replies = self._replies(submissions)
        items = {t: self._items(r.result) for t, r in replies.items() if r.ok} \
            if self.create_many else {}
        targets: dict[str, str] = {}
        results: dict[str, Mapping[str, Any]] = {}  # target -> the engine's answer for it
        failed: dict[str, str] = {}
        known: set[str] = set()  # accounts made before this run: registered before it, maybe
        for s in submissions:
            result, reason = self._result(s.address, asked[s.address], replies, items)
            if result is not None:
                target = str(result["address"]).lower()
                targets[s.address], results[target] = target, result
                if result.get("created") is not True:
                    known.add(target)
            else:
                failed[s.address] = reason or "failed"
        registered = self._wait_registered(list(targets.values()), known, deadline)
        self._archive({t: results[t] for t in targets.values() if t in registered}, deadline)
        out = []
        for s in submissions:
            made = targets.get(s.address)
            if made is not None and made in registered:
                out.append(Outcome(s.address, True, checksummed(made), existing=made in known))
            elif made is not None:
                out.append(Outcome(s.address, False, reason=(
                    f"the custodial engine made account {made} for user {s.address} (task "
                    f"{s.ref}) but the AccountsIndex does not have it after {self.timeout:.0f}s;"
                    " the engine's queue keeps trying; rerun to confirm")))
            else:
                out.append(Outcome(s.address, False, reason=failed[s.address]))
        self.client.forget({t for ids in asked.values() for t in ids})
        return out

    def _replies(self, submissions: Sequence[Submission]
                 ) -> tuple[float, dict[str, list[str]], dict[str, Reply]]:
        """``(deadline, task ids asked per user, replies by task id)``; a request lost on the
        way is asked once more after half the timeout (the engine answers a repeated request
        id with the same account)."""
        start = max(self.client.sent_at(s.ref) for s in submissions)
        tasks: dict[str, list[str]] = {}  # task id -> its users, in request order
        for s in submissions:
            tasks.setdefault(s.ref, []).append(s.address)
        if self.create_many:
            task, requests = TASK_CREATE_MANY, [self._many(u) for u in tasks.values()]
        else:
            task, requests = TASK_CREATE, [self._request(u[0]) for u in tasks.values()]
        asked, replies = self.client.gather(task, requests, list(tasks), since=start,
                                            timeout=self.timeout, stop=self.stop)
        return (start + self.timeout,
                {u: ids for users, ids in zip(tasks.values(), asked, strict=True)
                 for u in users}, replies)

    def _result(self, user: str, task_ids: Sequence[str], replies: Mapping[str, Reply],
                items: Mapping[str, Mapping[str, Any]]
                ) -> tuple[Mapping[str, Any] | None, str | None]:
        """The engine's answer for ``user``'s account (its new ``address`` checked) from a
        reply to one of ``task_ids``, or why there is none; ``items``: the replies of
        create_many tasks by request id."""
        task_name = TASK_CREATE_MANY if self.create_many else TASK_CREATE
        reply = self.client.best(task_ids, replies)
        if reply is None:
            broken = next((b for t in task_ids if (b := self.client.reply_error(t))), None)
            if broken is not None:
                return None, f"user {user}: {broken}"
            return None, str(self.client.timeout_error(task_name, ", ".join(task_ids),
                                                       self.timeout, user=user))
        task = reply.task_id
        if not reply.ok:
            return None, (f"the custodial engine could not create an account for user {user} "
                          f"(task {task}): {reply.error}")
        result: Any = reply.result
        if self.create_many:
            result = items.get(task, {}).get(norm(user))
            if not isinstance(result, dict):
                return None, (f"the custodial engine answered task {task} with no account for "
                              f"user {user}: {json.dumps(reply.result)[:200]}")
            if "error" in result:
                return None, (f"the custodial engine could not create an account for user "
                              f"{user} (task {task}): {result['error']}")
        address = result.get("address")
        if not isinstance(address, str) or not is_address(address):
            return None, (f"the custodial engine answered task {task} (user {user}) with no "
                          f"valid address: {json.dumps(result)[:200]}")
        return result, None

    @staticmethod
    def _items(result: Mapping[str, Any]) -> dict[str, Any]:
        """A create_many reply's answers by request id."""
        accounts = result.get("accounts")
        return {str(a.get("request_id")): a for a in accounts if isinstance(a, dict)} \
            if isinstance(accounts, list) else {}

    def _archive(self, results: Mapping[str, Mapping[str, Any]], deadline: float) -> None:
        """Save under ``tx/`` the transactions the engine lists in its ``results`` (its
        answer for each account) once it reports them mined, by ``deadline`` at most; what
        it has not mined by then is named in one line."""
        waiting: dict[int, str] = {}  # the engine's queue row -> what it is
        for account, result in results.items():
            txs = result.get("txs")
            for kind, tx_id in (txs.items() if isinstance(txs, dict) else ()):
                if isinstance(tx_id, int):
                    waiting[tx_id] = f"{TX_KINDS.get(kind, kind)} of {account}"
        mined: dict[str, str] = {}  # tx hash -> what it is (its bytes from the node)
        given: dict[str, str] = {}  # tx hash -> its bytes, as the engine gave them

        def all_mined() -> bool:
            answer = self.client.call(TASK_TX_STATUS, {"tx_ids": sorted(waiting)},
                                      timeout=min(self.timeout, STATUS_TIMEOUT),
                                      what="the transactions of new accounts")
            for row in answer.get("txs") or []:
                tx_id = row.get("id") if isinstance(row, dict) else None
                if tx_id not in waiting:
                    continue
                if row.get("status") == "mined" and isinstance(row.get("tx_hash"), str):
                    what = waiting.pop(tx_id)
                    if _hashes_to(row.get("raw"), row["tx_hash"]):
                        given[row["tx_hash"].lower()] = row["raw"]
                    else:  # (a version signed before the last was mined: the node has it)
                        mined[row["tx_hash"]] = what
                elif row.get("status") == "failed":  # the engine's to retry; nothing to save
                    waiting.pop(tx_id)
            return not waiting

        if not waiting:
            return
        try:
            poll(all_mined, until=deadline, first=0.05, cap=0.5, factor=1.5, stop=self.stop)
        except CustodialError as exc:
            log.warning("tx/: the custodial engine did not say whether %d of its transactions "
                        "are mined, so they are not archived: %s", len(waiting), exc)
        else:
            if waiting and not self.stop.is_set():
                log.warning("tx/: %d transactions of the custodial engine were not mined "
                            "within %.0fs, so they are not archived: %s", len(waiting),
                            self.timeout, ", ".join(list(waiting.values())[:3]))
        save(self.archive.tx, [(h, raw) for h, raw in given.items() if not self.archive.tx.has(h)])
        self.archive.fetch(mined)

    def _wait_registered(self, targets: Sequence[str], known: set[str], deadline: float
                         ) -> set[str]:
        """The ``targets`` the AccountsIndex has by ``deadline`` (the engine's queue mines).

        What counts is the index's answer to ``have``; whom to ask comes from its
        ``AddressAdded`` logs since the run began (one cheap request for every new block, not
        a call per account per look): an account made by this run is registered after the
        run began, so it is asked about once a log names it. ``known`` accounts (made before
        this run) are asked about at once, and every account left every :data:`FULL_CHECK`
        seconds, whatever the logs say."""
        client = self.network.client
        found: set[str] = set()
        asked_all = [time.monotonic()]
        first = [True]

        def all_found() -> bool:
            todo = [t for t in targets if t not in found]
            self._read_logs()
            now = time.monotonic()
            if now - asked_all[0] >= FULL_CHECK:
                asked_all[0] = now
                ask = todo
            else:
                ask = [t for t in todo if t in self._hints or (first[0] and t in known)]
            first[0] = False
            if ask:
                have = client.call_many([(self.index, ACCOUNTS_INDEX.fn("have"), (t,))
                                         for t in ask])
                found.update(t for t, h in zip(ask, have, strict=True) if h is True)
            return len(found) == len(targets)

        if not poll(all_found, until=deadline, first=0.05, cap=0.25, factor=1.5,
                    stop=self.stop) and self.stop.is_set():
            raise KeyboardInterrupt
        for t in found:
            self._hints.pop(t, None)
        return found

    def _read_logs(self) -> None:
        """Take the addresses of new blocks' AddressAdded logs as hints; a node that does not
        answer leaves them to the next look (or the full check)."""
        client = self.network.client
        try:
            head = client.head()
            if head < self._logs_from:
                return
            logs = client.logs(self.index, ADDRESS_ADDED, self._logs_from, head)
        except ChainError as exc:
            log.debug("AddressAdded logs not read: %s", exc)
            return
        self._logs_from = head + 1
        for entry in logs:
            data = str(entry.get("data") or "")
            if not entry.get("removed") and len(data) >= 40:
                self._hints["0x" + data[-40:].lower()] = None
        # bounded: more than the accounts in flight can only be other accounts' (whom the
        # full check covers anyway)
        limit = 2 * self.in_flight * self.batch_size
        while len(self._hints) > limit:
            del self._hints[next(iter(self._hints))]

    def finish(self, done: Sequence[tuple[UserRow, str]]) -> None:
        write_new_records(self.data, self.chain,
                          ((u.address, checksummed(t)) for u, t in done))

    def close(self) -> None:
        self.client.close()
        super().close()
