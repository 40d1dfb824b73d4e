"""Checks of a data directory's users shared by the importers: one user's person record and
opening balance (:func:`record_problem`), and what only the whole user list shows
(:func:`user_problems`: a phone two users share, an address with a bad checksum); and the
``new/`` record of an imported user (:func:`write_new_records`)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from cic_seeding.datadir import CheckedRows, DataDir, UserRow
from cic_seeding.records import jsonsafe
from cic_seeding.records.address import case_ok
from cic_seeding.records.chainspec import ChainSpec
from cic_seeding.records.person import add_identity, dumps, person_errors

_balances_lock = threading.Lock()
#: balances.csv rows by (device, inode, mtime_ns, size): parsed once per file version, not per
#: user (asked once per user: a stat, not a path resolution).
_balances_cache: dict[tuple[int, int, int, int], CheckedRows[int]] = {}


def record_problem(data: DataDir, user: UserRow) -> str | None:
    """Why ``user``'s person record or opening balance cannot be imported (None: they can).

    Raises RecordError when balances.csv as a whole is missing or unreadable."""
    return _checked_record(data, user)[1]


def _checked_record(data: DataDir, user: UserRow) -> tuple[dict[str, Any] | None, str | None]:
    """``(person record, None)``, or ``(None, why it cannot be imported)``
    (:func:`record_problem`)."""
    path = data.src.path(user.address)
    try:
        doc = jsonsafe.loads(path.read_bytes())
    except FileNotFoundError:
        return None, f"no person record at {path}"
    except (OSError, ValueError, RecursionError) as exc:
        return None, f"person record {path} is not valid JSON ({_short(exc)}); regenerate or fix it"
    errors = person_errors(doc)
    if errors:
        return None, f"person record {path} fails the schema: {_short(errors[0])}"
    problem = balance_problem(data, user)
    return (None, problem) if problem else (doc, None)


def _short(what: object, limit: int = 200) -> str:
    """``what`` as text of at most ``limit`` characters (a schema error quotes the value)."""
    text = str(what)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def balance_problem(data: DataDir, user: UserRow) -> str | None:
    """Why ``user`` has no usable opening balance in balances.csv (None: it has one): no row,
    or a bad one (its line, field and what is wrong)."""
    read = _balances(data)
    problem = read.problem(user.address)
    if problem is not None:
        return (f"opening balance of {user.address} cannot be read: {problem}; fix the row "
                "or regenerate")
    if read.get(user.address) is None:
        return (f"no opening balance for {user.address} in {data.balances_csv}; add its row "
                "or regenerate (`cic-seed validate DIR` lists every gap)")
    return None


def _balances(data: DataDir) -> CheckedRows[int]:
    path = data.balances_csv
    try:
        st = path.stat()
    except OSError:
        return data.read_balances()  # raises the RecordError that names the file
    version = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
    with _balances_lock:
        rows = _balances_cache.get(version)
        if rows is None:
            rows = data.read_balances()
            _balances_cache.clear()
            _balances_cache[version] = rows
        return rows


def user_problems(rows: Iterable[UserRow]) -> dict[str, str]:
    """``{address: reason}`` of users the data directory's user list makes unimportable: an
    address whose mixed case breaks its EIP-55 checksum (a mistyped character?), and every
    user after the first with the same phone (a phone is one user's identity)."""
    problems: dict[str, str] = {}
    first: dict[str, UserRow] = {}
    for row in rows:
        if not case_ok(row.address):
            problems[row.address] = (
                f"address {row.address} (users.csv index {row.index}) fails its EIP-55 "
                "checksum: a character may be mistyped; fix users.csv or regenerate")
            continue
        owner = first.setdefault(row.phone, row)
        if owner is not row:
            problems[row.address] = (
                f"phone {row.phone} of {row.address} (users.csv index {row.index}) is already "
                f"the phone of {owner.address} (index {owner.index}); phones must be unique: "
                "fix the data directory (`cic-seed validate DIR`)")
    return problems


class NewRecords:
    """The ``new/`` records of users imported under their own address: made while their
    ``src/`` record is checked (:meth:`check`, ahead of the sending path), written once they
    are confirmed (:meth:`write`). Holds the users between the two, a few batches."""

    def __init__(self, data: DataDir, chain: ChainSpec) -> None:
        self.data = data
        self.chain = chain
        self._made: dict[str, bytes] = {}

    def check(self, user: UserRow) -> str | None:
        """:func:`record_problem`, keeping the user's ``new/`` record when there is none."""
        doc, problem = _checked_record(self.data, user)
        if doc is not None:
            self._made[user.address] = dumps(add_identity(doc, self.chain, user.address,
                                                          copy=False))
        return problem

    def write(self, done: Iterable[tuple[str, str]]) -> None:
        """:func:`write_new_records`, from the records made by :meth:`check` where it made
        them."""
        rest = []
        for address, identity in done:
            made = self._made.pop(address, None)
            if made is None or identity != address:
                rest.append((address, identity))
            elif not self.data.new.has(identity):
                self.data.new.put(identity, made)
        write_new_records(self.data, self.chain, rest)


def write_new_records(data: DataDir, chain: ChainSpec,
                      done: Iterable[tuple[str, str]]) -> None:
    """``(user address, identity)`` pairs: the user's ``src/`` record with ``identity`` (its
    address on ``chain``) added goes under ``new/`` -- once: an existing one is kept."""
    for address, identity in done:
        if data.new.has(identity):
            continue
        doc = jsonsafe.loads(data.src.get(address))  # this run's own: changed in place
        data.new.put(identity, dumps(add_identity(doc, chain, identity, copy=False)))
