"""Replaying the generator's ``transactions.csv`` as signed transfers between sovereign users.

Rows go out in the fixture's order, in batches, each transfer signed with its sender's own key
(derived again from the manifest seed and the sender's index). Every row is a ledger entry in
the state store (importer ``traffic``) paid through the outbox (:mod:`cic_seeding.outbox`):
recorded with its signed transaction *before* it is broadcast, confirmed from its receipt,
re-sent byte for byte if the node lost it; one whose nonce another transaction took is signed
again only if the chain lacks its transfer. So a run killed anywhere is resumed by running it
again, and no transfer is made twice.
"""

from __future__ import annotations

import csv
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cic_seeding.chain.connect import checked_chain, connect
from cic_seeding.chain.registry import TOKEN, CicNetwork
from cic_seeding.chain.signer import Signer
from cic_seeding.chain.tx import Call
from cic_seeding.config import Settings
from cic_seeding.datadir import DataDir, dataset_settings
from cic_seeding.errors import DataDirError
from cic_seeding.generate.keys import derive_private_key
from cic_seeding.outbox import counts_line, ledger, outbox_for
from cic_seeding.state import Payment, StateStore, Status, norm, open_state_store
from cic_seeding.units import dataset_to_token

log = logging.getLogger(__name__)

LEDGER = "traffic"
TRANSFER_GAS = 90_000
TRANSFER = TOKEN.topic("Transfer")
#: Submitted rows followed per outbox pass.
SETTLE_PAGE = 1000


@dataclass
class TrafficResult:
    total: int = 0
    done_before: int = 0
    confirmed: int = 0
    failed: int = 0
    seconds: float = 0.0
    failures: list[tuple[int, str]] = field(default_factory=list)  # (row, reason)
    transactions: dict[str, int] = field(default_factory=dict)  # what the outbox did

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.done_before + self.confirmed == self.total

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def render_text(self) -> str:
        lines = [f"traffic: {self.done_before + self.confirmed}/{self.total} transfers done "
                 f"({self.confirmed} this run), {self.failed} failed, {self.seconds:.1f}s"]
        if self.transactions:
            lines.append("  " + counts_line(self.transactions))
        lines += [f"  row {row}: {reason}" for row, reason in self.failures[:10]]
        return "\n".join(lines)


def _kind(row: int) -> str:
    return f"t{row:09d}"


class _Replay:
    def __init__(self, settings: Settings, network: CicNetwork, store: StateStore,
                 stop: threading.Event) -> None:
        self.data = DataDir(settings.data_dir)
        self.manifest = self.data.manifest()
        self.client = network.client
        self.store = store
        self.stop = stop
        self.batch = max(1, settings.batch_size)
        self.token = network.token(settings.token_symbol)
        self.index = {norm(u.address): u.index for u in self.data.users()}
        self.rows = self._rows()
        self._signers: dict[str, Signer] = {}
        self.outbox = outbox_for(settings, self.client, store)

    def _rows(self) -> list[tuple[str, str, int]]:
        path = self.data.transactions_csv
        if not path.is_file():
            raise DataDirError(f"{path} is missing",
                               hint="generate with --transactions N to have traffic to replay")
        rows = []
        with path.open(newline="", encoding="utf-8") as fh:
            for n, row in enumerate(csv.reader(fh), 1):
                try:
                    sender, recipient, amount = norm(row[0]), norm(row[1]), int(row[2])
                except (IndexError, ValueError):
                    raise DataDirError(f"{path}:{n}: expected sender,recipient,amount,offset"
                                       ) from None
                if sender not in self.index or recipient not in self.index:
                    raise DataDirError(f"{path}:{n}: sender or recipient is not a user of "
                                       f"{self.data.root}")
                rows.append((sender, recipient,
                             dataset_to_token(amount, self.manifest.decimals, self.token.decimals)))
        return rows

    def signer(self, address: str) -> Signer:
        if address not in self._signers:
            key = derive_private_key(self.manifest.seed, self.index[address])
            self._signers[address] = Signer.from_key(key)
        return self._signers[address]

    def send(self, batch: list[Payment]) -> None:
        items = []
        for p in batch:
            _, recipient, amount = self.rows[int(p.kind[1:])]
            call = Call(self.token.address, TOKEN.encode("transfer", recipient, amount),
                        gas=TRANSFER_GAS)
            items.append((self.signer(p.address), call, [p]))
        # every sender is one of this run's users, used by this process alone: no lock
        ledger.send_rows(self.outbox, self.store, LEDGER, items, what="transfer",
                         purpose=lambda _: "transfer", lock=False)

    def settle(self) -> None:
        submitted = self.store.payments(LEDGER, [Status.SUBMITTED])
        for i in range(0, len(submitted), SETTLE_PAGE):
            mined = ledger.follow(self.outbox, self.store, LEDGER,
                                  submitted[i:i + SETTLE_PAGE], paid=self._paid,
                                  reverted=self._reverted)
            self.store.mark_payments_confirmed(LEDGER, [(p.address, p.kind, block)
                                                        for p, block in mined])

    def _reverted(self, rows: Sequence[Payment]) -> None:
        self.store.mark_payments_failed(LEDGER, [
            (p.address, p.kind, f"transfer {p.tx_hash} reverted (does the sender hold enough "
             "tokens? import and sync the users first)") for p in rows])

    def _paid(self, kind: str, rows: Sequence[Payment]) -> set[str]:
        """Senders of ``rows`` (all of ``kind``, one row) whose transfer the chain shows made
        anyway: more Transfer logs sender -> recipient of that amount than rows of the same
        transfer confirmed."""
        (row,) = rows
        sender, recipient, amount = self.rows[int(kind[1:])]
        pad = ["0x" + a[2:].rjust(64, "0") for a in (sender, recipient)]
        logs = self.client.rpc.call("eth_getLogs", [{
            "address": self.token.address, "topics": [TRANSFER, *pad],
            "fromBlock": "0x0", "toBlock": "latest"}])
        made = sum(1 for e in logs if not e.get("removed") and int(e["data"], 16) == amount)
        same = [i for i, r in enumerate(self.rows) if r == (sender, recipient, amount)]
        confirmed = sum(1 for i in same if (p := self.store.payment(LEDGER, sender, _kind(i)))
                        is not None and p.status == Status.CONFIRMED)
        return {row.address} if made > confirmed else set()


def replay_traffic(settings: Settings, *, network: CicNetwork | None = None,
                   stop: threading.Event | None = None, timeout: float = 600.0
                   ) -> TrafficResult:
    """Send every row of transactions.csv not yet confirmed, in order; returns the tally."""
    started = time.monotonic()
    stop = stop or threading.Event()
    settings = dataset_settings(settings)
    network = network or connect(settings, signer=False)
    checked_chain(network, settings)
    with open_state_store(settings) as store, store.exclusive("traffic"):
        run = _Replay(settings, network, store, stop)
        store.plan_payments(LEDGER, [(s, _kind(i), a) for i, (s, _, a) in enumerate(run.rows)])
        result = TrafficResult(total=len(run.rows))
        result.done_before = len(store.payments(LEDGER, [Status.CONFIRMED]))
        ledger.retry(run.outbox, store, LEDGER, store.payments(LEDGER, [Status.FAILED]))
        deadline = started + timeout
        while not stop.is_set() and time.monotonic() < deadline:
            run.settle()
            pending = store.payments(LEDGER, [Status.PENDING], limit=run.batch)
            if pending:
                run.send(pending)
            elif not store.payments(LEDGER, [Status.SUBMITTED]):
                break
        failed = store.payments(LEDGER, [Status.FAILED])
        result.failed = len(failed)
        result.failures = [(int(p.kind[1:]), p.reason or "failed") for p in failed[:100]]
        result.confirmed = len(store.payments(LEDGER, [Status.CONFIRMED])) - result.done_before
        result.transactions = run.outbox.counts.to_dict()
        log.info("traffic: %s", run.outbox.counts.line())
    result.seconds = time.monotonic() - started
    return result
