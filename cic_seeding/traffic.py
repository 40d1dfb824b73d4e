"""Replaying the generator's ``transactions.csv`` as signed transfers between sovereign users.

Rows go out in the fixture's order, in batches, each transfer signed with its sender's own key
(derived again from the manifest seed and the sender's index). Every row is a ledger entry in
the state store (importer ``traffic``) paid through the outbox (:mod:`cic_seeding.outbox`):
recorded with its signed transaction *before* it is broadcast, confirmed from its receipt,
re-sent byte for byte if the node lost it; one whose nonce another transaction took is signed
again only if the chain lacks its transfer. So a run killed anywhere is resumed by running it
again, and no transfer is made twice.

A bad row costs that row alone: one that cannot be read (a field missing, an amount like
``12x``, an address that is none or not a user of the data directory) is never planned, and
one whose sender the AccountsIndex lacks is never sent; either is reported failed with its line
and what is wrong, every other row is replayed, and a rerun after the fix replays it. Rows are
keyed by their place in the file (``t<line - 1>``), so fixing one row moves no other.
"""

from __future__ import annotations

import csv
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from eth_utils import is_hex_address

from cic_seeding.chain.connect import checked_chain, connect
from cic_seeding.chain.registry import ACCOUNTS_INDEX, TOKEN, CicNetwork
from cic_seeding.chain.signer import Signer
from cic_seeding.chain.tx import Call
from cic_seeding.config import Settings
from cic_seeding.datadir import DataDir, RowProblem, dataset_settings
from cic_seeding.errors import DataDirError
from cic_seeding.generate.keys import derive_private_key
from cic_seeding.outbox import counts_line, ledger, outbox_for
from cic_seeding.records.address import case_ok
from cic_seeding.state import Payment, StateStore, Status, norm, open_state_store
from cic_seeding.units import dataset_to_token

log = logging.getLogger(__name__)

LEDGER = "traffic"
TRANSFER_GAS = 90_000
TRANSFER = TOKEN.topic("Transfer")
#: Submitted rows followed per outbox pass.
SETTLE_PAGE = 1000

#: Submitted rows followed per outbox pass.
SETTLE_PAGE = 1000
#: Failures a result keeps (the state store has them all).
KEEP_FAILURES = 100
#: The fields of a transactions.csv row, in order.
FIELDS = ("sender", "recipient", "amount", "offset")
UINT256_LIMIT = 2**256


@dataclass
class TrafficResult:
    total: int = 0  # rows of transactions.csv (blank lines are none)
    done_before: int = 0
    confirmed: int = 0
    failed: int = 0  # rows not replayed: unreadable, refused, or their transfer failed
    quarantined: int = 0  # of those, rows that cannot be read at all
    seconds: float = 0.0
    #: (line of transactions.csv, reason), in line order, the first ``KEEP_FAILURES``
    failures: list[tuple[int, str]] = field(default_factory=list)
    transactions: dict[str, int] = field(default_factory=dict)  # what the outbox did
    file: str = "transactions.csv"

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
        if self.quarantined:
            rows = "1 row" if self.quarantined == 1 else f"{self.quarantined} rows"
            lines.append(f"  {rows} of {self.file} cannot be read: not sent; fix, then rerun "
                         "to replay (`cic-seed validate DIR` lists every bad row)")
        lines += [f"  {self.file} line {line}: {reason}" for line, reason in self.failures[:10]]
        if self.failed > 10:
            lines.append(f"  ... and {self.failed - 10} more (the log names every one)")
        return "\n".join(lines)


class _Transfer(NamedTuple):
    sender: str  # 0x lower-case
    recipient: str
    amount: int  # token units


def _kind(row: int) -> str:
    """The ledger kind of the row counted from 0 (line ``row + 1``)."""
    return f"t{row:09d}"


def _row(kind: str) -> int:
    return int(kind[1:])


def read_transfers(data: DataDir, users: Collection[str], dataset_decimals: int,
                   token_decimals: int) -> tuple[dict[int, _Transfer], dict[int, RowProblem]]:
    """transactions.csv row by row, keyed by row (from 0): the transfer of every good row and
    what is wrong with every bad one (its line, field and why), so a bad row costs that row
    alone. ``users``: the data directory's addresses (0x lower-case). DataDirError only if the
    file as a whole is missing or unreadable."""
    path = data.transactions_csv
    good: dict[int, _Transfer] = {}
    bad: dict[int, RowProblem] = {}
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            for row, fields in enumerate(csv.reader(fh)):
                if not fields:
                    continue  # a blank line holds no transfer
                parsed = _transfer(fields, users, data, dataset_decimals, token_decimals)
                if isinstance(parsed, _Transfer):
                    good[row] = parsed
                else:
                    bad[row] = RowProblem(path, row + 1, *parsed)
    except FileNotFoundError:
        raise DataDirError(f"{path} is missing",
                           hint="generate with --transactions N to have traffic to replay"
                           ) from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataDirError(f"{path} is not a UTF-8 csv file: {exc}",
                           hint="fix it or regenerate with --transactions N") from None
    return good, bad


def _transfer(fields: list[str], users: Collection[str], data: DataDir, dataset_decimals: int,
              token_decimals: int) -> _Transfer | tuple[str, str]:
    """The transfer of one row, or (field, what is wrong with it)."""
    if len(fields) < len(FIELDS):
        missing = FIELDS[len(fields)]
        return missing, f"missing: expected {','.join(FIELDS)}"
    if len(fields) > len(FIELDS):
        return "offset", (f"expected {len(FIELDS)} fields ({','.join(FIELDS)}), found "
                          f"{len(fields)}")
    addresses = []
    for name, value in zip(FIELDS[:2], fields[:2], strict=True):
        value = value.strip()
        if not is_hex_address(value):
            return name, f"{value[:50]!r} is not an address (0x and 40 hex digits)"
        if not case_ok("0x" + value.removeprefix("0x")):
            return name, f"{value} fails its EIP-55 checksum: a character may be mistyped"
        if norm(value) not in users:
            return name, f"{value} is not a user of {data.root} (users.csv)"
        addresses.append(norm(value))
    amount, offset = fields[2].strip(), fields[3].strip()
    if not amount.isascii() or not amount.isdigit() or not amount.strip("0"):
        return "amount", (f"{amount[:40]!r} is not a positive whole number (digits 0-9, in "
                          "the dataset's smallest unit)")
    digits = amount.lstrip("0")
    if len(digits) > 80 or (tokens := dataset_to_token(int(digits), dataset_decimals,
                                                        token_decimals)) >= UINT256_LIMIT:
        return "amount", f"{amount[:40]!r} is not below 2**256 in the token's smallest unit"
    if not offset.isascii() or not offset.isdigit():
        return "offset", f"{offset[:40]!r} is not a whole number of seconds"
    return _Transfer(addresses[0], addresses[1], tokens)


class _Replay:
    def __init__(self, settings: Settings, network: CicNetwork, store: StateStore,
                 stop: threading.Event) -> None:
        self.data = DataDir(settings.data_dir)
        self.manifest = self.data.manifest()
        self.client = network.client
        self.accounts_index = network.accounts_index
        self.store = store
        self.stop = stop
        self.batch = max(1, settings.batch_size)
        self.token = network.token(settings.token_symbol)
        self.index = {norm(u.address): u.index for u in self.data.users()}
        self.rows, self.bad = read_transfers(self.data, self.index.keys(),
                                             self.manifest.decimals, self.token.decimals)
        for _, problem in sorted(self.bad.items()):
            log.warning("traffic: row not replayed: %s", problem)
        self._signers: dict[str, Signer] = {}
        self._registered: dict[str, bool] = {}
        self.outbox = outbox_for(settings, self.client, store)

    def signer(self, address: str) -> Signer:
        if address not in self._signers:
            key = derive_private_key(self.manifest.seed, self.index[address])
            self._signers[address] = Signer.from_key(key)
        return self._signers[address]

    def current(self, p: Payment) -> bool:
        """Whether ledger row ``p`` is the entry of its transactions.csv row as the file reads
        now (its sender; a row changed since has another entry, or none)."""
        row = self.rows.get(_row(p.kind))
        return row is not None and row.sender == p.address

    def send(self, batch: Sequence[Payment]) -> None:
        """Sign and send the transfers of ``batch`` (pending ledger rows); a row the file no
        longer reads as planned, or whose sender the AccountsIndex lacks, fails instead."""
        refused, ready = [], []
        for p in batch:
            row = self.rows.get(_row(p.kind))
            why = self._stale(p, row)
            if why is not None:
                refused.append((p.address, p.kind, why))
            elif row is not None:
                ready.append((p, row))
        unregistered = self._unregistered(row.sender for _, row in ready)
        for p, row in ready:
            if row.sender in unregistered:
                refused.append((p.address, p.kind, (
                    f"sender {row.sender} is not registered in the AccountsIndex "
                    f"{self.accounts_index}: import it and sync it (the transfer needs its "
                    "tokens and gas), then rerun")))
        if refused:
            for _, kind, why in refused:
                log.warning("traffic: %s line %d not sent: %s", self.data.transactions_csv.name,
                            _row(kind) + 1, why)
            self.store.mark_payments_failed(LEDGER, refused)
        items = []
        for p, row in ready:
            if row.sender in unregistered:
                continue
            call = Call(self.token.address, TOKEN.encode("transfer", row.recipient, row.amount),
                        gas=TRANSFER_GAS)
            items.append((self.signer(p.address), call, [p]))
        # every sender is one of this run's users, used by this process alone: no lock
        ledger.send_rows(self.outbox, self.store, LEDGER, items, what="transfer",
                         purpose=lambda _: "transfer", lock=False)

    def _stale(self, p: Payment, row: _Transfer | None) -> str | None:
        """Why pending ledger row ``p`` must not be sent as the file reads now (None: send)."""
        line = _row(p.kind) + 1
        if _row(p.kind) in self.bad:
            return f"{self.bad[_row(p.kind)]}; fix the row, then rerun"
        if row is None:
            return (f"planned from line {line}, which {self.data.transactions_csv} no longer "
                    "has: not sent")
        if row.sender != p.address:
            return (f"planned from line {line} with sender {p.address}, which the line no "
                    f"longer names (it names {row.sender}): not sent")
        if row.amount != p.amount:
            return (f"planned from line {line} as {p.amount}, but the line now reads "
                    f"{row.amount}: restore the line, or replay into a fresh state store")
        return None

    def _unregistered(self, senders: Iterable[str]) -> set[str]:
        """Those of ``senders`` the AccountsIndex lacks (asked once a run per sender)."""
        wanted = set(senders)
        ask = sorted(wanted - self._registered.keys())
        if ask:
            have = self.client.call_many([(self.accounts_index, ACCOUNTS_INDEX.fn("have"), (a,))
                                          for a in ask])
            for address, answer in zip(ask, have, strict=True):
                if isinstance(answer, Exception):
                    raise answer  # the node or the index is broken: no row is to blame
                self._registered[address] = answer is True
        return {a for a in wanted if not self._registered[a]}

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
        transfer = self.rows.get(_row(kind))
        if transfer is None or transfer.sender != row.address:
            return set()  # the line changed since: what it was is not known any more
        sender, recipient, amount = transfer
        pad = ["0x" + a[2:].rjust(64, "0") for a in (sender, recipient)]
        logs = self.client.rpc.call("eth_getLogs", [{
            "address": self.token.address, "topics": [TRANSFER, *pad],
            "fromBlock": "0x0", "toBlock": "latest"}])
        made = sum(1 for e in logs if not e.get("removed") and int(e["data"], 16) == amount)
        same = [i for i, r in self.rows.items() if r == transfer]
        confirmed = sum(1 for i in same if (p := self.store.payment(LEDGER, sender, _kind(i)))
                        is not None and p.status == Status.CONFIRMED)
        return {row.address} if made > confirmed else set()

    def confirmed(self) -> int:
        """Rows of the file as it reads now whose transfer the ledger has confirmed."""
        return sum(1 for p in self.store.payments(LEDGER, [Status.CONFIRMED]) if self.current(p))

    def settled(self, total: int) -> int:
        """Rows confirmed or failed, unreadable ones included, at most ``total`` (counted by
        the store: a row the file changed since may count twice)."""
        ledger_rows = sum(n for (_, status), n in self.store.payment_counts(LEDGER).items()
                          if status in (Status.CONFIRMED, Status.FAILED))
        return min(total, ledger_rows + len(self.bad))

    def failures(self) -> list[tuple[int, str]]:
        """(line, reason) of every row not replayed: unreadable, or its ledger entry failed."""
        out = {row + 1: f"field {p.field}: {p.problem}" for row, p in self.bad.items()}
        for p in self.store.payments(LEDGER, [Status.FAILED]):
            if self.current(p):
                out.setdefault(_row(p.kind) + 1, p.reason or "failed")
        return sorted(out.items())


def replay_traffic(settings: Settings, *, network: CicNetwork | None = None,
                   stop: threading.Event | None = None, timeout: float = 600.0,
                   progress: Callable[[int, int], None] | None = None) -> TrafficResult:
    """Send every row of transactions.csv not yet confirmed, in the file's order; returns the
    tally. A row that cannot be read or sent fails alone (see the module).

    ``progress(rows settled, rows)``: confirmed or failed (unreadable rows count as settled),
    when the replay begins and after every batch."""
    started = time.monotonic()
    stop = stop or threading.Event()
    settings = dataset_settings(settings)
    network = network or connect(settings, signer=False)
    checked_chain(network, settings)
    with open_state_store(settings) as store, store.exclusive("traffic"):
        run = _Replay(settings, network, store, stop)
        store.plan_payments(LEDGER, [(t.sender, _kind(i), t.amount)
                                     for i, t in sorted(run.rows.items())])
        result = TrafficResult(total=len(run.rows) + len(run.bad),
                               quarantined=len(run.bad), file=run.data.transactions_csv.name)
        result.done_before = run.confirmed()
        ledger.retry(run.outbox, store, LEDGER, store.payments(LEDGER, [Status.FAILED]))
        # in the file's order: a row fixed since the last run goes before the rows after it
        queue = sorted(store.payments(LEDGER, [Status.PENDING]), key=lambda p: _row(p.kind))
        deadline = started + timeout
        while not stop.is_set() and time.monotonic() < deadline:
            if progress is not None:
                progress(run.settled(result.total), result.total)
            run.settle()
            if queue:
                pending, queue = queue[:run.batch], queue[run.batch:]
            else:  # rows handed back this run (their transaction was replaced)
                pending = store.payments(LEDGER, [Status.PENDING], limit=run.batch)
            if pending:
                run.send(pending)
            elif not store.payments(LEDGER, [Status.SUBMITTED]):
                break
        if progress is not None:
            progress(run.settled(result.total), result.total)
        failures = run.failures()
        result.failed = len(failures)
        result.failures = failures[:KEEP_FAILURES]
        result.confirmed = run.confirmed() - result.done_before
        result.transactions = run.outbox.counts.to_dict()
        log.info("traffic: %s", run.outbox.counts.line())
    result.seconds = time.monotonic() - started
    return result
