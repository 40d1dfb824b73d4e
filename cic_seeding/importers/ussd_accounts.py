"""``ussd-pins`` and ``ussd-data``: gateway accounts for users created outside USSD.

A user imported by another importer (``cic_eth``, ``eth`` ...) has a ``new/`` record keyed
by its target address, but no account at the USSD gateway. These importers write one directly
into the gateway's accounts table (``ussd_db_url`` / ``ussd_db_schema``, or the devnet's):

* ``ussd-pins`` -- the PIN hash from ``pins.csv`` (``create_import_pins.py DIR`` writes it
  with the seeded PIN; in ``pins_dir`` when that is set), status active, the seeded
  preferred language;
* ``ussd-data`` -- status active and the seeded preferred language, keeping any PIN hash.

Rerunning either writes the same values again (an upsert per phone). Neither pays anything:
the syncer has no users of theirs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cic_seeding.config import Settings
from cic_seeding.datadir import DataDir, UserRow
from cic_seeding.errors import ConfigError, DataDirError
from cic_seeding.generate.keys import preferred_language
from cic_seeding.importers.base import Importer, Outcome, Submission
from cic_seeding.records.person import phone_of
from cic_seeding.state import StateStore
from cic_seeding.ussd.accounts import ACTIVE, Accounts
from cic_seeding.ussd.pins import read_pins


def open_accounts(settings: Settings) -> Accounts:
    """The gateway's accounts table the settings name (or the devnet's)."""
    url, schema = settings.ussd_db_url, settings.ussd_db_schema
    if not url:
        raise ConfigError("no USSD gateway database is configured",
                          hint="set ussd_db_url (CIC_USSD_DB_URL), or use a devnet started "
                          "with `cic-seed devnet up --ussd`")
    return Accounts(url, schema, pool_size=2)


class UssdPinsImporter(Importer):
    """Sets seeded PIN hashes, status and language of gateway accounts (``pins.csv``)."""

    name = "ussd-pins"
    custody = None  # the accounts' own importer registered their keys
    ussd_accounts = True
    in_flight = 1
    with_pins = True

    def __init__(self, settings: Settings, *, accounts: Accounts | None = None,
                 **kw: Any) -> None:
        super().__init__(settings, **kw)
        self.accounts = accounts or open_accounts(settings)
        self.seed = self.data.manifest().seed
        self.pins_dir = Path(settings.pins_dir) if settings.pins_dir else self.data.root
        self._pins = ({r.phone: r.pin_hash for r in read_pins(self.pins_dir)}
                      if self.with_pins else {})
        self._targets: dict[str, str] | None = None

    def sends(self, users: Sequence[UserRow]) -> list[str]:
        return [f"{len(users)} USSD account rows written"]

    def done_on_chain(self, users: Sequence[UserRow]) -> Mapping[str, str | None]:
        return {}  # an upsert: writing again is harmless

    def submit(self, users: Sequence[UserRow]) -> list[Submission]:
        targets = self._phone_targets()
        rows = []
        for u in users:
            target = targets.get(u.phone)
            pin_hash = self._pins.get(u.phone)
            if target is None or (self.with_pins and pin_hash is None):
                continue
            rows.append((u.phone, target.lower(), pin_hash, ACTIVE,
                         preferred_language(self.seed, u.index)))
        self.accounts.upsert_seeded(rows)
        return [Submission(u.address, u.phone, targets.get(u.phone)) for u in users]

    def outcomes(self, submissions: Sequence[Submission]) -> list[Outcome]:
        out = []
        for s in submissions:
            if s.target is None:
                out.append(Outcome(s.address, False, reason=(
                    f"no new/ record holds phone {s.ref}: import the user first (e.g. "
                    "`cic-seed import cic_eth`)")))
            elif self.with_pins and s.ref not in self._pins:
                out.append(Outcome(s.address, False, reason=(
                    f"{self.pins_dir}/pins.csv has no PIN for {s.ref}; rerun "
                    "`python create_import_pins.py DIR`")))
            else:
                out.append(Outcome(s.address, True, s.target))
        return out

    @classmethod
    def sync_users(cls, data: DataDir, store: StateStore) -> dict[str, str]:
        return {}  # nothing to pay: the accounts' own importer's syncer pays them

    def close(self) -> None:
        self.accounts.close()
        super().close()

    def _phone_targets(self) -> dict[str, str]:
        if self._targets is None:
            found = {}
            for key in self.data.new:
                try:
                    found[phone_of(json.loads(self.data.new.get(key)))] = "0x" + key
                except (OSError, ValueError, KeyError) as exc:
                    raise DataDirError(f"new/ record {key} cannot be read: {exc}") from None
            self._targets = found
        return self._targets


class UssdDataImporter(UssdPinsImporter):
    """Sets status and language of gateway accounts (PIN hashes left as they are)."""

    name = "ussd-data"
    with_pins = False
