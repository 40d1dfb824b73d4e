"""Replaying the generator's ``transactions.csv`` as signed transfers between sovereign users.

Rows go out in the fixture's order, in batches, each transfer signed with its sender's own key
(derived again from the manifest seed and the sender's index). Every row is a ledger entry in
the state store (importer ``traffic``): recorded with its signed transaction *before* it is
broadcast, confirmed from its receipt, and re-sent byte for byte if the node lost it. So a run
killed anywhere is resumed by running it again, and no transfer is made twice.
"""

from __future__ import annotations

import csv
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from cic_seeding.chain.connect import checked_chain, connect
from cic_seeding.chain.nonce import is_nonce_error
from cic_seeding.chain.registry import TOKEN, CicNetwork
from cic_seeding.chain.signer import Signer
from cic_seeding.chain.tx import Call
from cic_seeding.config import Settings
from cic_seeding.datadir import DataDir, dataset_settings
from cic_seeding.errors import DataDirError
from cic_seeding.generate.keys import derive_private_key
from cic_seeding.state import Payment, StateStore, Status, norm, open_state_store
from cic_seeding.units import dataset_to_token

LEDGER = "traffic"
TRANSFER_GAS = 90_000


@dataclass
class TrafficResult:
    total: int = 0
    done_before: int = 0
    confirmed: int = 0
    failed: int = 0
    seconds: float = 0.0
    failures: list[tuple[int, str]] = field(default_factory=list)  # (row, reason)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.done_before + self.confirmed == self.total

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def render_text(self) -> str:
        lines = [f"traffic: {self.done_before + self.confirmed}/{self.total} transfers done "
                 f"({self.confirmed} this run), {self.failed} failed, {self.seconds:.1f}s"]
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
        senders = sorted({p.address for p in batch})
        counts = self.client.rpc.batch([("eth_getTransactionCount", [s, "pending"])
                                        for s in senders])
        nonces = {s: int(c, 16) for s, c in zip(senders, counts, strict=True)}
        price, chain_id = self.client.gas_price(), self.client.chain_id
        signed = []
        for p in batch:
            _, recipient, amount = self.rows[int(p.kind[1:])]
            call = Call(self.token.address, TOKEN.encode("transfer", recipient, amount),
                        gas=TRANSFER_GAS)
            tx = self.signer(p.address).sign(call, nonce=nonces[p.address], gas_price=price,
                                             chain_id=chain_id)
            signed.append((p, tx, nonces[p.address]))
            nonces[p.address] += 1
        self.store.mark_payments_submitted(LEDGER, [(p.address, p.kind, tx.tx_hash, tx.raw, n)
                                                    for p, tx, n in signed])
        errors = self.client.broadcast([tx.raw for _, tx, _ in signed])
        retry = [(p.address, p.kind) for (p, _, _), e in zip(signed, errors, strict=True)
                 if e is not None and is_nonce_error(e)]
        failed = [(p.address, p.kind, f"the node refused the transfer: {e}")
                  for (p, _, _), e in zip(signed, errors, strict=True)
                  if e is not None and not is_nonce_error(e)]
        if retry:
            self.store.reset_payments(LEDGER, retry)
        if failed:
            self.store.mark_payments_failed(LEDGER, failed)

    def settle(self) -> None:
        submitted = self.store.payments(LEDGER, [Status.SUBMITTED])
        hashes = [p.tx_hash for p in submitted if p.tx_hash]
        receipts = self.client.receipts(hashes)
        if len(receipts) < len(hashes) and self.client.explicit_mining:
            self.client.mine()
            receipts.update(self.client.receipts([h for h in hashes if h not in receipts]))
        self.store.mark_payments_confirmed(LEDGER, [
            (p.address, p.kind, receipts[p.tx_hash].block_number) for p in submitted
            if p.tx_hash in receipts and receipts[p.tx_hash].ok])
        self.store.mark_payments_failed(LEDGER, [
            (p.address, p.kind, f"transfer {p.tx_hash} reverted (does the sender hold enough "
             "tokens? import and sync the users first)") for p in submitted
            if p.tx_hash in receipts and not receipts[p.tx_hash].ok])
        lost = [p for p in submitted if p.tx_hash not in receipts]
        if lost:
            known = self.client.known([p.tx_hash for p in lost if p.tx_hash])
            gone = [p for p in lost if p.tx_hash not in known and p.raw_tx]
            if gone:  # the same bytes again: the nonce makes a second copy impossible
                errors = self.client.broadcast([p.raw_tx or "" for p in gone])
                self.store.reset_payments(LEDGER, [
                    (p.address, p.kind) for p, e in zip(gone, errors, strict=True)
                    if e is not None and is_nonce_error(e)])
                self.store.mark_payments_failed(LEDGER, [
                    (p.address, p.kind, f"the node refused the transfer: {e}")
                    for p, e in zip(gone, errors, strict=True)
                    if e is not None and not is_nonce_error(e)])


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
        store.reset_payments(LEDGER, [(p.address, p.kind)
                                      for p in store.payments(LEDGER, [Status.FAILED])])
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
    result.seconds = time.monotonic() - started
    return result
