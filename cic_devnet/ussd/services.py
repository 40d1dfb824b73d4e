"""What the gateway asks other services: the custodial engine (accounts, balances,
transfers) and the metadata server (the person, phone and preferences documents).

:class:`Activator` finishes registrations in the background: for each pending account it asks
the engine for an account (request id ``ussd:<phone>``: asking again after a crash returns the
same account), writes the metadata documents, and activates the account. On start it picks up
whatever a previous run left unfinished.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from eth_utils import to_checksum_address

from cic_seeding.custodial import (
    TASK_BALANCE,
    TASK_CREATE,
    TASK_TRANSFER,
    CustodialClient,
)
from cic_seeding.errors import CicSeedError
from cic_seeding.meta.client import MetaClient
from cic_seeding.records.chainspec import ChainSpec
from cic_seeding.records.person import build_person
from cic_seeding.records.pointers import person_pointer, phone_pointer, preferences_pointer
from cic_seeding.records.vcard import VCard
from cic_seeding.ussd.accounts import Account, Accounts

log = logging.getLogger(__name__)


class CustodialWallet:
    """Balances and transfers through the custodial engine (one client, one call at a time)."""

    def __init__(self, broker_url: str, queue: str, timeout: float = 20.0) -> None:
        self._client = CustodialClient(broker_url, queue, timeout=timeout)
        self._lock = threading.Lock()

    def call(self, task: str, kwargs: dict[str, Any], what: str) -> dict[str, Any]:
        with self._lock:
            return self._client.call(task, kwargs, what=what)

    def balance(self, address: str) -> tuple[int, int, str]:
        r = self.call(TASK_BALANCE, {"address": address.lower()}, f"the balance of {address}")
        return int(r["balance"]), int(r["decimals"]), str(r["symbol"])

    def transfer(self, sender: str, recipient: str, amount: int, request_id: str) -> None:
        self.call(TASK_TRANSFER, {"sender": sender.lower(), "recipient": recipient.lower(),
                                  "amount": amount, "request_id": request_id},
                  f"a transfer from {sender}")

    def create_many(self, phones: Sequence[str], wait: float) -> dict[str, str]:
        """Ask for the accounts of ``phones`` at once (request id ``ussd:<phone>``); the
        addresses (0x lower) of those answered within ``wait`` seconds."""
        with self._lock:
            ids = self._client.send(TASK_CREATE, [{"request_id": f"ussd:{p}"} for p in phones])
            replies = self._client.collect(ids, time.monotonic() + wait)
            self._client.forget(ids)
        out = {}
        for phone, task_id in zip(phones, ids, strict=True):
            reply = replies.get(task_id)
            if reply is not None and reply.ok and isinstance(reply.result.get("address"), str):
                out[phone] = str(reply.result["address"]).lower()
            elif reply is not None:
                log.warning("the engine did not create the account of %s: %s", phone,
                            reply.error or reply.result)
        return out

    def close(self) -> None:
        with self._lock:
            self._client.close()


class Activator:
    """A thread finishing pending registrations; :meth:`wake` after a new one."""

    def __init__(self, accounts: Accounts, wallet: CustodialWallet, meta: MetaClient,
                 chain: ChainSpec, *, idle: float = 1.0, wait: float = 10.0) -> None:
        self.accounts = accounts
        self.wallet = wallet
        self.meta = meta
        self.chain = chain
        self.idle = idle
        self.wait = wait
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ussd-activator", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self, phone: str = "") -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                todo = self.accounts.unfinished()
            except Exception as exc:  # the database is away: try again later
                log.warning("pending registrations not read: %s", exc)
                todo = []
            try:
                addresses = self._addresses([a for a in todo if a.address is None])
            except (CicSeedError, OSError) as exc:
                log.warning("accounts of %d registrations not asked for: %s", len(todo), exc)
                addresses = {}
            finished = 0
            for account in todo:
                if self._stop.is_set():
                    return
                address = account.address or addresses.get(account.phone)
                if address is None:
                    continue  # asked again next round (same request id: same account)
                try:
                    self.finish(account, address)
                    finished += 1
                except (CicSeedError, OSError) as exc:
                    log.warning("registration of %s not finished yet: %s", account.phone, exc)
            if finished == 0 or self._stop.is_set():
                self._wake.wait(self.idle)

    def _addresses(self, accounts: Sequence[Account]) -> dict[str, str]:
        """New accounts for these registrations, asked for all at once; stored as they come."""
        if not accounts:
            return {}
        found = self.wallet.create_many([a.phone for a in accounts], self.wait)
        for phone, address in found.items():
            self.accounts.set_address(phone, address)
        return found

    def finish(self, account: Account, address: str) -> str:
        """Write the documents of an account that has its address, then activate it;
        returns the checksummed address."""
        checksum = to_checksum_address(address)
        person = build_person(
            address=checksum, chain=self.chain,
            card=VCard(account.given_name, account.family_name, account.phone),
            gender=account.gender, date_registered=int(time.time()), date_of_birth={},
            location={"area_name": account.location}, products=[])
        self.meta.put(person_pointer(checksum), person)
        self.meta.put(preferences_pointer(checksum), {"preferred_language": account.language})
        self.meta.put(phone_pointer(account.phone), checksum)  # last: the importer waits on it
        self.accounts.activate(account.phone)
        log.info("account %s of %s is active", checksum, account.phone)
        return checksum
