"""The users to verify: the data directory's users with what the importer did for each, and
what the replayed traffic moved between them."""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from cic_seeding.config import Settings
from cic_seeding.datadir import DataDir
from cic_seeding.errors import CicSeedError, VerifyError
from cic_seeding.state import StateStore, Status, norm, open_state_store, state_location
from cic_seeding.traffic import LEDGER
from cic_seeding.verify.base import ImportState, VerifyUser


def load_users(data: DataDir, imports: ImportState) -> list[VerifyUser]:
    """Every user of ``data`` in index order, with its target and import state.

    A user whose balances.csv row is bad carries the problem (``balance_problem``): it is
    quarantined, not the run stopped. Raises VerifyError if users.csv or balances.csv is
    missing.
    """
    users = []
    try:
        balances = data.read_balances()
        for row in data.users():  # row by row: the data directory's rows are not all held
            address = norm(row.address)
            state = imports.users.get(address)
            problem = balances.problem(address)
            users.append(VerifyUser(
                row.index, address, imports.target(address), balances.get(address),
                phone=row.phone, import_status=state.status.value if state else None,
                import_reason=state.reason if state else None,
                balance_problem=None if problem is None else str(problem)))
    except FileNotFoundError as exc:
        raise VerifyError(f"{data.root} has no {Path(str(exc.filename)).name}: it is not a "
                          "complete data directory",
                          hint="generate one with `cic-seed generate --dir DIR COUNT`") from None
    return users


def load_import(settings: Settings, importer: str) -> ImportState:
    """The state store's record of ``importer``, with who holds its users' keys and which
    users went through the USSD gateway (any importer whose ``ussd_accounts`` is set).

    A missing default SQLite store means nothing was imported (it is not created).
    """
    location = state_location(settings)
    custody, ussd = _importer_traits(importer)
    if settings.state_url is None and not Path(location).exists():
        return ImportState(importer, location, exists=False, custody=custody, ussd=ussd)
    with open_state_store(settings) as store:
        users = {u.address: u for u in store.users(importer, txs=False)}  # stored norm()ed
        ussd_users = _ussd_users(store)
    return ImportState(importer, _masked(location), users, custody=custody, ussd=ussd,
                       ussd_users=ussd_users)


def _importer_traits(name: str) -> tuple[str | None, bool]:
    """``(custody, ussd_accounts)`` of the importer ``name``; (None, False) for an importer
    that is not installed (the verifier then only notes that it imported nobody)."""
    from cic_seeding.importers.registry import get_importer

    try:
        cls = get_importer(name)
    except CicSeedError:
        return None, False
    return cls.custody, cls.ussd_accounts


def _ussd_users(store: StateStore) -> frozenset[str]:
    """Users (0x lower-case) that an importer giving USSD accounts has in the store, in any
    state: a registration that failed still concerns the USSD checks."""
    from cic_seeding.importers.registry import get_importer, importer_names

    out: set[str] = set()
    for name in importer_names():
        if not any(store.counts(name).values()):
            continue  # not loaded: importing every installed importer costs ~50 ms
        try:
            gives = get_importer(name).ussd_accounts
        except CicSeedError:
            continue  # a broken third-party importer is not ours to verify
        if gives:
            out.update(norm(a) for a in store.addresses(name))
    return frozenset(out)


def _masked(url: str) -> str:
    """``url`` without a password (``postgresql://user:****@host/db``)."""
    return re.sub(r"^([a-z]+://[^:/@]+):[^@]*@", r"\1:****@", url)


@dataclass
class Traffic:
    """What the confirmed rows of the traffic ledger moved, per user (0x lower-case address):
    ``net`` received minus sent in the token's smallest unit, ``confirmed`` how many of the
    user's transfers are confirmed, ``unsettled`` how many are submitted but not settled (they
    may be on chain, or not yet). ``problems`` are ledger rows transactions.csv cannot explain.
    """

    net: Counter[str] = field(default_factory=Counter)
    confirmed: Counter[str] = field(default_factory=Counter)
    unsettled: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


def load_traffic(settings: Settings, data: DataDir) -> Traffic:
    """The traffic ledger of the state store, read with the recipients of its rows from
    transactions.csv. ``cic-seed traffic`` keeps one payment per row of transactions.csv there
    (importer ``traffic``, the sender as address, kind ``t<row>``, row counted from 0). No store
    or no ledger: no traffic."""
    location = state_location(settings)
    traffic = Traffic()
    if settings.state_url is None and not Path(location).exists():
        return traffic
    with open_state_store(settings) as store:
        rows = store.payments(LEDGER)
    counted = {}  # row -> (sender, amount, settled)
    for p in rows:
        if p.status in (Status.PENDING, Status.FAILED) or not p.kind[1:].isdigit():
            continue  # never sent, or never took effect
        counted[int(p.kind[1:])] = (norm(p.address), p.amount, p.status == Status.CONFIRMED)
    if not counted:
        return traffic
    recipients = _recipients(data, set(counted), traffic.problems)
    for row, (sender, amount, settled) in sorted(counted.items()):
        named = recipients.get(row)
        if named is None:
            continue  # a problem already says why
        csv_sender, recipient = named
        if csv_sender != sender:
            traffic.problems.append(
                f"the traffic ledger's transfer of row {row} was sent by {sender}, but "
                f"{data.transactions_csv} line {row + 1} names {csv_sender} as its sender: "
                "was the ledger filled from another data directory?")
            continue
        if not settled:
            traffic.unsettled[sender] += 1
            traffic.unsettled[recipient] += 1
            continue
        traffic.net[sender] -= amount
        traffic.net[recipient] += amount
        traffic.confirmed[sender] += 1
        traffic.confirmed[recipient] += 1
    return traffic


def _recipients(data: DataDir, wanted: set[int], problems: list[str]
                ) -> dict[int, tuple[str, str]]:
    """``{row: (sender, recipient)}`` of the ``wanted`` rows (from 0) of transactions.csv;
    rows it lacks or cannot give are added to ``problems``."""
    path = data.transactions_csv
    out: dict[int, tuple[str, str]] = {}
    malformed = set()
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            for row, fields in enumerate(csv.reader(fh)):
                if row not in wanted:
                    continue
                if len(fields) < 3 or not all(f.strip() for f in fields[:2]):
                    malformed.add(row)
                    problems.append(f"{path} line {row + 1}: expected sender,recipient,amount; "
                                    "the traffic ledger has a transfer of it")
                    continue
                out[row] = (norm(fields[0].strip()), norm(fields[1].strip()))
    except FileNotFoundError:
        problems.append(f"the traffic ledger has {len(wanted)} transfers but {path} is "
                        "missing: the balances they moved cannot be accounted for")
        return out
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise VerifyError(f"cannot read {path}: {exc}",
                          hint="restore it from the generator run that made the data") from None
    lacking = sorted(wanted - set(out) - malformed)
    if lacking:
        problems.append(f"the traffic ledger has transfers of rows {_rows(lacking)} that "
                        f"{path} does not have")
    return out


def _rows(rows: list[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:5])
    return shown + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")
