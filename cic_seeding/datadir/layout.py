"""The data directory and its parts, in the layout the original CIC toolkit used."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from cic_seeding.datadir.manifest import MANIFEST_NAME, Manifest
from cic_seeding.datadir.store import KeyedStore
from cic_seeding.datadir.timeline import TIMELINE_NAME
from cic_seeding.errors import RecordError


@dataclass(frozen=True)
class RowProblem:
    """Why one row of a csv index file cannot be used: where it is and which field is bad."""

    path: Path
    line: int
    field: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path.name} line {self.line}, field {self.field}: {self.problem}"


T = TypeVar("T")


@dataclass(frozen=True)
class CheckedRows(Generic[T]):
    """A csv index file read row by row: the value of every good row and the problem of
    every bad one, each keyed by lower-case address without 0x (as the file writes it)."""

    values: dict[str, T]
    problems: dict[str, RowProblem]

    def problem(self, address: str) -> RowProblem | None:
        """The problem of ``address``'s row (0x or not, any case); None: no bad row."""
        return self.problems.get(address.lower().removeprefix("0x"))

    def get(self, address: str) -> T | None:
        """The value of ``address``'s good row (0x or not, any case); None: none."""
        return self.values.get(address.lower().removeprefix("0x"))


@dataclass(frozen=True)
class UserRow:
    """One generated user as the csv index files list it (no private data)."""

    index: int
    address: str  # checksummed, 0x-prefixed
    phone: str



@dataclass(frozen=True)
class _Bad:
    """What is wrong with one csv row: the field and a sentence."""

    field: str
    why: str

class DataDir:
    """Paths and readers of one data directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.src = KeyedStore(self.root / "src")
        self.new = KeyedStore(self.root / "new")
        self.phone = KeyedStore(self.root / "phone")
        self.tx = KeyedStore(self.root / "tx")
        self.keystore = self.root / "keystore"
        self.manifest_path = self.root / MANIFEST_NAME
        self.users_csv = self.root / "users.csv"
        self.tags_csv = self.root / "tags.csv"
        self.balances_csv = self.root / "balances.csv"
        self.transactions_csv = self.root / "transactions.csv"
        self.timeline = self.root / TIMELINE_NAME  # stage timings (datadir.timeline)

    def manifest(self) -> Manifest:
        return Manifest.read(self.root)

    def users(self) -> Iterator[UserRow]:
        """Every user in index order, from users.csv (``index,address,phone``)."""
        for lineno, row in self._rows(self.users_csv):
            if len(row) < 3 or not _DIGITS.fullmatch(row[0]):
                raise RecordError(f"{self.users_csv}:{lineno}: expected index,address,phone",
                                  path=str(self.users_csv), hint=_FIX_ROW)
            if not _ADDRESS.fullmatch(row[1]):
                raise RecordError(f"{self.users_csv}:{lineno}: {row[1][:50]!r} is not an address "
                                  "(0x and 40 hex digits)", path=str(self.users_csv),
                                  hint=_FIX_ROW)
            yield UserRow(int(row[0]), row[1], row[2])

    def balances(self) -> dict[str, int]:
        """Opening balance per lower-case address without 0x (smallest unit).

        RecordError naming the first bad row if any row is bad; :meth:`read_balances` instead
        keeps the good rows and says what is wrong with each bad one."""
        read = self.read_balances()
        _refuse(read, self.balances_csv)
        return read.values

    def read_balances(self) -> CheckedRows[int]:
        """balances.csv row by row: the opening balance of every good row, and a
        :class:`RowProblem` (line, field, what is wrong) per address whose row is bad, so one
        bad row quarantines one user. RecordError only if the file as a whole is unreadable."""
        def amount(fields: list[str]) -> int | _Bad:
            why = balance_value_problem(fields)
            return _Bad("amount", why) if why is not None else int(fields[0])

        return self._checked_rows(self.balances_csv, amount)

    def balance_rows(self) -> dict[str, list[str]]:
        """balances.csv as read, unchecked: the values per lower-case address without 0x."""
        return self._address_rows(self.balances_csv)

    def tags(self) -> dict[str, list[str]]:
        """Tags per lower-case address without 0x; RecordError naming the first bad row if
        any row is bad (:meth:`read_tags` keeps the good rows)."""
        read = self.read_tags()
        _refuse(read, self.tags_csv)
        return read.values

    def read_tags(self) -> CheckedRows[list[str]]:
        """tags.csv row by row (``address,tag[,tag...]``; ``address,`` is a user without
        tags): the tags of every good row and a :class:`RowProblem` per address whose row is
        bad. RecordError only if the file as a whole is unreadable."""
        def tags(fields: list[str]) -> list[str] | _Bad:
            if not fields:
                return _Bad("tags", "missing: expected address,tag[,tag...] (address, for no "
                            "tags)")
            if fields == [""]:
                return []
            if any(not tag.strip() for tag in fields):
                return _Bad("tags", f"an empty tag in {','.join(fields)[:60]!r}")
            return fields

        return self._checked_rows(self.tags_csv, tags)

    def _checked_rows(self, path: Path, parse: Callable[[list[str]], T | _Bad]
                      ) -> CheckedRows[T]:
        """``address,fields...`` rows of ``path``: ``parse(fields)`` gives the value or what is
        wrong with which field; a second row for an address is a problem of that address."""
        values: dict[str, T] = {}
        problems: dict[str, RowProblem] = {}
        lines: dict[str, int] = {}
        for lineno, row in self._rows(path):
            if not row:
                continue  # a blank line holds nobody's row
            key, fields = row[0], row[1:]
            if key in lines:
                problems[key] = RowProblem(path, lineno, "address", "a second row for this "
                                           f"address (the first is line {lines[key]})")
                values.pop(key, None)
                continue
            lines[key] = lineno
            value = parse(fields)
            if isinstance(value, _Bad):
                problems[key] = RowProblem(path, lineno, value.field, value.why)
            else:
                values[key] = value
        return CheckedRows(values, problems)

    def _address_rows(self, path: Path) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for lineno, row in self._rows(path):
            if len(row) < 2:
                raise RecordError(f"{path}:{lineno}: expected address,value", path=str(path))
            out[row[0]] = row[1:]
        return out

    def _rows(self, path: Path) -> Iterator[tuple[int, list[str]]]:
        """(line number, fields) of a csv file; RecordError if it is missing or not text."""
        try:
            with path.open(newline="", encoding="utf-8") as fh:
                yield from enumerate(csv.reader(fh), 1)
        except FileNotFoundError:
            raise RecordError(f"{path} is missing: {self.root} is not a complete data directory",
                              path=str(path), hint="regenerate it with `cic-seed generate --dir "
                              "DIR COUNT`") from None
        except (UnicodeDecodeError, csv.Error) as exc:
            raise RecordError(f"{path} is not a UTF-8 csv file: {exc}", path=str(path),
                              hint="fix it or regenerate; `cic-seed validate DIR` lists every "
                              "bad row") from None


_DIGITS = re.compile(r"[0-9]+")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_FIX_ROW = "fix the row or regenerate; `cic-seed validate DIR` lists every bad row"
UINT256_LIMIT = 2**256


def balance_value_problem(values: list[str]) -> str | None:
    """What is wrong with the amount field(s) of one balances.csv row (None: it is one
    integer in [0, 2**256), the smallest unit)."""
    if not values or values == [""]:
        return "missing: expected address,amount"
    if len(values) != 1:
        return (f"expected one amount, found {len(values)} fields "
                f"({','.join(values)[:40]!r})")
    value = values[0]
    if not _DIGITS.fullmatch(value):
        return f"{value[:40]!r} is not a whole number (digits 0-9 only, in the smallest unit)"
    if len(value) > 80 or int(value) >= UINT256_LIMIT:
        return f"{value[:40]!r} is not below 2**256"
    return None


def _refuse(read: CheckedRows[Any], path: Path) -> None:
    """RecordError naming the first bad row of ``read`` (none: nothing)."""
    if read.problems:
        first = min(read.problems.values(), key=lambda p: p.line)
        raise RecordError(f"{path}:{first.line}: field {first.field}: {first.problem}",
                          path=str(path),
                          hint="fix the row or regenerate; `cic-seed validate DIR` lists "
                          "every bad row")


def keyfile_path(keystore: Path, address: str) -> Path:
    """A sovereign user's v3 keyfile in ``keystore``: ``<address lower, no 0x>.json``."""
    return keystore / f"{address.lower().removeprefix('0x')}.json"
