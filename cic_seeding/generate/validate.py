"""``cic-seed validate DIR``: check a data directory rule by rule, naming every bad file."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cic_seeding.datadir import DataDir, Manifest
from cic_seeding.errors import ManifestError, UsageError
from cic_seeding.records import jsonsafe
from cic_seeding.records.address import case_ok
from cic_seeding.records.chainspec import ChainSpec
from cic_seeding.records.person import identity_addresses, person_errors, phone_of
from cic_seeding.records.pointers import phone_pointer

RULES = {
    "manifest": "manifest.json is readable, of a known schema, and counts the records and "
                "transfers",
    "record_schema": "every src/ record is a valid person document with an E.164 vCard phone",
    "record_key": "every src/ record is stored under the address of its identity",
    "phone_unique": "no two records share a phone number",
    "phone_index": "phone/ maps each record's phone pointer to its address, and nothing else",
    "users_csv": "users.csv lists every record once, with its index and phone",
    "tags_csv": "tags.csv has one row per record, with the manifest's tags",
    "balances_csv": "balances.csv has one integer row per record within the gift threshold",
    "transactions_csv": "transactions.csv moves tokens between known users without overdraft",
}
MAX_LISTED = 20


@dataclass
class RuleResult:
    rule: str
    total: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def ok(self) -> int:
        return self.total - self.failed

    def check(self, passed: bool, where: str, why: str) -> None:
        self.total += 1
        if not passed:
            self.failures.append((where, why))


@dataclass
class ValidationResult:
    directory: Path
    rules: dict[str, RuleResult]

    @property
    def passed(self) -> bool:
        return all(r.failed == 0 for r in self.rules.values())

    def render_text(self) -> str:
        lines = [f"{r.rule}: {r.ok}/{r.total}" + ("" if not r.failed else f"  FAILED {r.failed}")
                 for r in self.rules.values()]
        for r in self.rules.values():
            for where, why in r.failures[:MAX_LISTED]:
                lines.append(f"  {r.rule}: {where}: {why}")
            if r.failed > MAX_LISTED:
                lines.append(f"  {r.rule}: ... and {r.failed - MAX_LISTED} more")
        lines.append("valid" if self.passed else "INVALID")
        return "\n".join(lines)


_DIGITS = re.compile(r"[0-9]+")


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    if not path.exists():
        return
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh)
        try:
            yield from enumerate(reader, 1)
        except csv.Error:  # a field past the csv module's limit: that row is malformed
            yield reader.line_num, []


def validate(directory: str | Path) -> ValidationResult:
    data = DataDir(directory)
    rules = {name: RuleResult(name) for name in RULES}
    manifest: Manifest | None = None
    try:
        manifest = data.manifest()
        rules["manifest"].check(True, str(data.manifest_path), "")
    except ManifestError as exc:
        rules["manifest"].check(False, str(data.manifest_path), exc.message)
    chain = None
    if manifest:
        try:
            chain = ChainSpec.parse(manifest.chain_spec)
        except UsageError as exc:
            rules["manifest"].check(False, str(data.manifest_path), exc.message)
    records: dict[str, str] = {}  # lower address without 0x -> phone
    phones: dict[str, str] = {}
    for key in data.src:
        path = data.src.path(key)
        try:
            doc = jsonsafe.loads(path.read_bytes())
        except OSError as exc:
            rules["record_schema"].check(False, str(path), f"unreadable: {exc.strerror or exc}")
            continue
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            rules["record_schema"].check(False, str(path), f"not JSON: {exc}")
            continue
        errors = person_errors(doc)
        rules["record_schema"].check(not errors, str(path), "; ".join(errors[:3]))
        if errors:
            continue
        addresses = identity_addresses(doc, chain) if chain else []
        ok = any(a[2:].upper() == key for a in addresses)
        rules["record_key"].check(ok, str(path), f"no identity on {chain} matches the file name")
        phone = phone_of(doc)
        rules["phone_unique"].check(phone not in phones, str(path),
                                    f"phone {phone} also in {phones.get(phone)}")
        phones.setdefault(phone, str(path))
        records[key.lower()] = phone
        pointer_path = data.phone.path(phone_pointer(phone))
        try:
            target = pointer_path.read_text().strip()
            rules["phone_index"].check(target[2:].lower() == key.lower(), str(path),
                                       f"phone {phone}: {pointer_path} maps it to {target}")
        except (OSError, UnicodeDecodeError):
            rules["phone_index"].check(False, str(path),
                                       f"phone {phone} has no pointer {pointer_path}")
    expected = {phone_pointer(phone).upper() for phone in records.values()}
    for key in data.phone:
        if key not in expected:
            rules["phone_index"].check(False, str(data.phone.path(key)),
                                       "pointer of no record's phone")
    if manifest:
        rules["manifest"].check(manifest.count == len(records), str(data.manifest_path),
                                f"count is {manifest.count} but src/ holds {len(records)} records")
    _check_users(data, rules["users_csv"], records)
    _check_rows(data.tags_csv, rules["tags_csv"], records, None,
                manifest.tags if manifest else None)
    limit = manifest.gift_threshold * 10 ** manifest.decimals if manifest else None
    balances = _check_rows(data.balances_csv, rules["balances_csv"], records, limit)
    transfers = _check_transactions(data, rules["transactions_csv"], records, balances)
    if manifest:
        rules["manifest"].check(
            manifest.transactions == transfers, str(data.manifest_path),
            f"transactions is {manifest.transactions} but transactions.csv has {transfers} rows")
    return ValidationResult(data.root, rules)


def _check_users(data: DataDir, rule: RuleResult, records: dict[str, str]) -> None:
    seen: set[str] = set()
    for lineno, row in _csv_rows(data.users_csv):
        where = f"{data.users_csv}:{lineno}"
        if len(row) != 3 or not _DIGITS.fullmatch(row[0]) or lineno - 1 != int(row[0]):
            rule.check(False, where, "expected index,address,phone with consecutive indices")
            continue
        hex_part = row[1][2:]
        if not case_ok(row[1]):
            rule.check(False, where, f"{row[1]} fails its EIP-55 checksum (a mistyped character?)")
        key = hex_part.lower()
        if key not in records:
            rule.check(False, where, f"{row[1]} has no record in src/")
        elif key in seen:
            rule.check(False, where, f"{row[1]} is listed twice")
        else:
            rule.check(records[key] == row[2], where,
                       f"phone {row[2]} differs from {records[key]} in {data.src.path(key)}")
        seen.add(key)
    for key in records.keys() - seen:
        rule.check(False, str(data.src.path(key)), "record not listed in users.csv")


def _check_rows(path: Path, rule: RuleResult, records: dict[str, str], limit: int | None,
                tags: list[str] | None = None) -> dict[str, int]:
    seen: dict[str, int] = {}
    for lineno, row in _csv_rows(path):
        where = f"{path}:{lineno}"
        if len(row) < 2 or row[0] not in records or row[0] in seen:
            rule.check(False, where, "row without a record, or a duplicate row")
            continue
        if limit is not None:
            value = row[1]
            ok = len(row) == 2 and bool(_DIGITS.fullmatch(value)) and int(value) <= limit
            rule.check(ok, where, f"balance {value!r} is not an integer in [0, {limit}]")
            seen[row[0]] = int(value) if ok else 0
        else:
            ok = all(row[1:]) and (tags is None or row[1:] == tags)
            rule.check(ok, where, f"tags {','.join(row[1:])!r}, expected "
                                  f"{','.join(tags or ['non-empty tags'])!r} (the manifest's)")
            seen[row[0]] = 0
    for key in records.keys() - seen.keys():
        rule.check(False, str(path), f"no row for record {key}")
    return seen


def _check_transactions(data: DataDir, rule: RuleResult, records: dict[str, str],
                        balances: dict[str, int]) -> int:
    """Replays the transfers from the opening balances; returns the number of rows."""
    current = dict(balances)
    rows = 0
    for lineno, row in _csv_rows(data.transactions_csv):
        rows += 1
        where = f"{data.transactions_csv}:{lineno}"
        try:
            sender, recipient = row[0][2:].lower(), row[1][2:].lower()
            amount, _offset = int(row[2]), int(row[3])
        except (IndexError, ValueError):
            rule.check(False, where, "expected sender,recipient,amount,offset")
            continue
        if sender not in records or recipient not in records or amount <= 0:
            rule.check(False, where, "unknown user or non-positive amount")
            continue
        ok = current.get(sender, 0) >= amount
        rule.check(ok, where, f"overdraft: {sender} holds {current.get(sender, 0)}, sends {amount}")
        if ok:
            current[sender] -= amount
            current[recipient] = current.get(recipient, 0) + amount
    return rows
