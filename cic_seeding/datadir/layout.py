"""The data directory and its parts, in the layout the original CIC toolkit used."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cic_seeding.datadir.manifest import MANIFEST_NAME, Manifest
from cic_seeding.datadir.store import KeyedStore
from cic_seeding.errors import RecordError


@dataclass(frozen=True)
class UserRow:
    """One generated user as the csv index files list it (no private data)."""

    index: int
    address: str  # checksummed, 0x-prefixed
    phone: str


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

    def manifest(self) -> Manifest:
        return Manifest.read(self.root)

    def users(self) -> Iterator[UserRow]:
        """Every user in index order, from users.csv (``index,address,phone``)."""
        for lineno, row in self._rows(self.users_csv):
            if len(row) < 3 or not _DIGITS.fullmatch(row[0]):
                raise RecordError(f"{self.users_csv}:{lineno}: expected index,address,phone",
                                  path=str(self.users_csv))
            yield UserRow(int(row[0]), row[1], row[2])

    def balances(self) -> dict[str, int]:
        """Opening balance per lower-case address without 0x (smallest unit)."""
        out = {}
        for key, values in self.balance_rows().items():
            amount = parse_balance(values)
            if amount is None:
                raise RecordError(
                    f"{self.balances_csv}: balance of {key} is {','.join(values)!r}, not a "
                    "non-negative integer below 2**256", path=str(self.balances_csv),
                    hint="fix the row or regenerate; `cic-seed validate DIR` lists every bad row")
            out[key] = amount
        return out

    def balance_rows(self) -> dict[str, list[str]]:
        """balances.csv as read, unchecked: the values per lower-case address without 0x."""
        return self._address_rows(self.balances_csv)

    def tags(self) -> dict[str, list[str]]:
        return self._address_rows(self.tags_csv)

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
UINT256_LIMIT = 2**256


def parse_balance(values: list[str]) -> int | None:
    """The amount of one balances.csv row's values (None: not one integer in [0, 2**256))."""
    if len(values) != 1 or not _DIGITS.fullmatch(values[0]) or len(values[0]) > 80:
        return None
    amount = int(values[0])
    return amount if amount < UINT256_LIMIT else None


def keyfile_path(keystore: Path, address: str) -> Path:
    """A sovereign user's v3 keyfile in ``keystore``: ``<address lower, no 0x>.json``."""
    return keystore / f"{address.lower().removeprefix('0x')}.json"
