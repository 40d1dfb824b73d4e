"""The data directory and its parts, in the layout the original CIC toolkit used."""

from __future__ import annotations

import csv
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
        with self.users_csv.open(newline="", encoding="utf-8") as fh:
            for lineno, row in enumerate(csv.reader(fh), 1):
                try:
                    yield UserRow(int(row[0]), row[1], row[2])
                except (IndexError, ValueError):
                    raise RecordError(f"{self.users_csv}:{lineno}: expected index,address,phone",
                                      path=str(self.users_csv)) from None

    def balances(self) -> dict[str, int]:
        """Opening balance per lower-case address without 0x (smallest unit)."""
        out = {}
        for key, values in self._address_rows(self.balances_csv).items():
            if len(values) != 1 or not values[0].isdigit():
                raise RecordError(
                    f"{self.balances_csv}: balance of {key} is {','.join(values)!r}, not a "
                    "non-negative integer", path=str(self.balances_csv),
                    hint="fix the row or regenerate; `cic-seed validate DIR` lists every bad row")
            out[key] = int(values[0])
        return out

    def tags(self) -> dict[str, list[str]]:
        return self._address_rows(self.tags_csv)

    def _address_rows(self, path: Path) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        with path.open(newline="", encoding="utf-8") as fh:
            for lineno, row in enumerate(csv.reader(fh), 1):
                if len(row) < 2:
                    raise RecordError(f"{path}:{lineno}: expected address,value", path=str(path))
                out[row[0]] = row[1:]
        return out
