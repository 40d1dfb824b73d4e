"""The custodial importer (``cic_eth``): the custodial engine holds the users' keys.

Per user: ``cic_custodial.account.create`` with the generated address as request id (the
engine creates one account per request id, so a rerun never makes a second one); the engine
registers the new address in the AccountsIndex; once the registration is on chain the user is
confirmed and its person record goes under ``new/`` keyed by the new address, with that
address added to the target chain's identity. A whole batch of requests goes out at once and
the replies come back on this run's Redis callback channel, so many users are in flight.

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
faucet payout); once they are mined (``cic_custodial.tx.status``) they are fetched from the
node by hash and saved under ``tx/``, as the outbox saves the transactions this toolkit signs
-- before the user is confirmed, so a rerun of a user not confirmed saves them then. One the
engine has not mined by the user's deadline, or the node does not have, costs a log line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from eth_utils import is_address, to_checksum_address

from cic_seeding.chain.connect import checked_chain, connect
from cic_seeding.chain.registry import ACCOUNTS_INDEX, CicNetwork
from cic_seeding.config import Settings
from cic_seeding.custodial import (
    TASK_CREATE,
    TASK_TX_STATUS,
    CustodialClient,
    Reply,
    engine_client,
    engine_status,
)
from cic_seeding.datadir import UserRow
from cic_seeding.errors import CustodialError
from cic_seeding.importers._records import record_problem, write_new_records
from cic_seeding.importers.base import Importer, Outcome, Submission
from cic_seeding.outbox import TxArchive
from cic_seeding.remote import CUSTODIAL_ENGINE, poll
from cic_seeding.state import norm

log = logging.getLogger(__name__)

#: Seconds to wait for the engine's status answer when a run begins.
STATUS_TIMEOUT = 15.0
#: What the engine's transaction kinds (in a create reply's ``txs``) are, for log lines.
TX_KINDS = {"register": "registration", "gas": "gas gift", "faucet": "faucet payout"}


class CicEthImporter(Importer):
    """Creates every generated user's account in the custodial engine."""

    name = "cic_eth"
    custody = "custodial"
    service = CUSTODIAL_ENGINE
    in_flight = 4

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
        self.archive = TxArchive(self.data.tx, self.network.client.rpc)

    # -- primitives ----------------------------------------------------------------------
    def begin(self) -> None:
        """The engine answers and registers on this network; the syncer's cursor starts here."""
        self.network.check_chain_id(self.chain)
        self.client.open()
        engine_status(self.client, self.index, timeout=min(self.timeout, STATUS_TIMEOUT))
        token = self.network.token(self.settings.token_symbol)
        self.faucet = self.network.faucet_payout(token) > 0
        self.store.init_cursor(self.name, str(self.chain), self.network.client.head())

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
        ids = self.client.send(TASK_CREATE, [self._request(u.address) for u in users])
        return [Submission(u.address, task_id) for u, task_id in zip(users, ids, strict=True)]

    def outcomes(self, submissions: Sequence[Submission]) -> list[Outcome]:
        deadline, asked, replies = self._replies(submissions)
        targets: dict[str, str] = {}
        failed: dict[str, str] = {}
        for s in submissions:
            target, reason = self._target(s.address, asked[s.address], replies)
            if target is not None:
                targets[s.address] = target
            else:
                failed[s.address] = reason or "failed"
        registered = self._wait_registered(list(targets.values()), deadline)
        self._archive({targets[s.address]: self.client.best(asked[s.address], replies)
                       for s in submissions if targets.get(s.address) in registered},
                      deadline)
        out = []
        for s in submissions:
            target = targets.get(s.address)
            if target is not None and target in registered:
                out.append(Outcome(s.address, True, to_checksum_address(target)))
            elif target is not None:
                out.append(Outcome(s.address, False, reason=(
                    f"the custodial engine made account {target} for user {s.address} (task "
                    f"{s.ref}) but the AccountsIndex does not have it after {self.timeout:.0f}s;"
                    " the engine's queue keeps trying; rerun to confirm")))
            else:
                out.append(Outcome(s.address, False, reason=failed[s.address]))
        self.client.forget(t for ids in asked.values() for t in ids)
        return out

    def _replies(self, submissions: Sequence[Submission]
                 ) -> tuple[float, dict[str, list[str]], dict[str, Reply]]:
        """``(deadline, task ids asked per user, replies by task id)``; a request lost on the
        way is asked once more after half the timeout (the engine answers a repeated request
        id with the same account)."""
        start = max(self.client.sent_at(s.ref) for s in submissions)
        asked, replies = self.client.gather(
            TASK_CREATE, [self._request(s.address) for s in submissions],
            [s.ref for s in submissions], since=start, timeout=self.timeout, stop=self.stop)
        return (start + self.timeout,
                {s.address: ids for s, ids in zip(submissions, asked, strict=True)}, replies)

    def _target(self, user: str, task_ids: Sequence[str], replies: Mapping[str, Reply]
                ) -> tuple[str | None, str | None]:
        """The new address from a reply to one of ``task_ids`` (asked for ``user``), or why
        there is none."""
        reply = self.client.best(task_ids, replies)
        if reply is None:
            broken = next((b for t in task_ids if (b := self.client.reply_error(t))), None)
            if broken is not None:
                return None, f"user {user}: {broken}"
            return None, str(self.client.timeout_error(TASK_CREATE, ", ".join(task_ids),
                                                       self.timeout, user=user))
        task = reply.task_id
        if not reply.ok:
            return None, (f"the custodial engine could not create an account for user {user} "
                          f"(task {task}): {reply.error}")
        address = reply.result.get("address")
        if not isinstance(address, str) or not is_address(address):
            return None, (f"the custodial engine answered task {task} (user {user}) with no "
                          f"valid address: {json.dumps(reply.result)[:200]}")
        return address.lower(), None

    def _archive(self, replies: Mapping[str, Reply | None], deadline: float) -> None:
        """Save under ``tx/`` the transactions the engine lists in its ``replies`` (by
        account) once it reports them mined, by ``deadline`` at most; what it has not mined
        by then is named in one line."""
        waiting: dict[int, str] = {}  # the engine's queue row -> what it is
        for account, reply in replies.items():
            txs = reply.result.get("txs") if reply is not None and reply.ok else None
            for kind, tx_id in (txs.items() if isinstance(txs, dict) else ()):
                if isinstance(tx_id, int):
                    waiting[tx_id] = f"{TX_KINDS.get(kind, kind)} of {account}"
        mined: dict[str, str] = {}  # tx hash -> what it is

        def all_mined() -> bool:
            answer = self.client.call(TASK_TX_STATUS, {"tx_ids": sorted(waiting)},
                                      timeout=min(self.timeout, STATUS_TIMEOUT),
                                      what="the transactions of new accounts")
            for row in answer.get("txs") or []:
                tx_id = row.get("id") if isinstance(row, dict) else None
                if tx_id not in waiting:
                    continue
                if row.get("status") == "mined" and isinstance(row.get("tx_hash"), str):
                    mined[row["tx_hash"]] = waiting.pop(tx_id)
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
        self.archive.fetch(mined)

    def _wait_registered(self, targets: Sequence[str], deadline: float) -> set[str]:
        """The ``targets`` the AccountsIndex has by ``deadline`` (the engine's queue mines)."""
        client = self.network.client
        found: set[str] = set()

        def all_found() -> bool:
            todo = [t for t in targets if t not in found]
            if todo:
                have = client.call_many([(self.index, ACCOUNTS_INDEX.fn("have"), (t,))
                                         for t in todo])
                found.update(t for t, h in zip(todo, have, strict=True) if h is True)
            return len(found) == len(targets)

        if not poll(all_found, until=deadline, first=0.05, cap=0.5, factor=1.5,
                    stop=self.stop) and self.stop.is_set():
            raise KeyboardInterrupt
        return found

    def finish(self, done: Sequence[tuple[UserRow, str]]) -> None:
        write_new_records(self.data, self.chain,
                          ((u.address, to_checksum_address(t)) for u, t in done))

    def close(self) -> None:
        self.client.close()
        super().close()
