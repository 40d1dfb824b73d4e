"""``cic-seed validate``: generated directories pass; each hand corruption is named by its file."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from cic_seeding.datadir import DataDir
from cic_seeding.generate.generator import GenerateOptions, generate
from cic_seeding.generate.validate import RULES, validate
from cic_seeding.records.person import phone_of
from tests.generate._incli import InCli

COUNT = 40


@pytest.fixture()
def datadir(tmp_path: Path) -> DataDir:
    generate(GenerateOptions(directory=tmp_path / "d", count=COUNT, seed=3, transactions=10,
                             tags=("individual", "farmer")))
    return DataDir(tmp_path / "d")


def test_clean_directory_passes(datadir: DataDir, cli: InCli) -> None:
    result = validate(datadir.root)
    assert result.passed
    assert result.rules["record_schema"].ok == COUNT
    assert all(r.failed == 0 and r.total > 0 for r in result.rules.values())
    proc = cli("validate", str(datadir.root))
    assert proc.returncode == 0
    for rule in RULES:  # a count per rule
        assert f"\n{rule}: " in "\n" + proc.stdout
    assert proc.stdout.rstrip().endswith("valid")


def _doc(datadir: DataDir, index: int) -> tuple[Path, dict]:
    row = list(datadir.users())[index]
    path = datadir.src.path(row.address)
    return path, json.loads(path.read_bytes())


def truncate_json(datadir: DataDir) -> Path:
    path, _ = _doc(datadir, 0)
    path.write_bytes(path.read_bytes()[:-7])
    return path


def break_schema(datadir: DataDir) -> Path:
    path, doc = _doc(datadir, 1)
    doc["gender"] = "unknown"
    path.write_text(json.dumps(doc))
    return path


def change_phone(datadir: DataDir) -> Path:
    path, doc = _doc(datadir, 2)
    card = base64.b64decode(doc["vcard"]).decode()
    old = phone_of(doc)
    new = "+254799999999" if old != "+254799999999" else "+254799999998"
    doc["vcard"] = base64.b64encode(card.replace(old, new).encode()).decode()
    path.write_text(json.dumps(doc, sort_keys=True, separators=(",", ":")))
    return path


def bad_vcard(datadir: DataDir) -> Path:
    path, doc = _doc(datadir, 3)
    doc["vcard"] = base64.b64encode(b"BEGIN:VCARD\r\nVERSION:2.1\r\nEND:VCARD\r\n").decode()
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("corrupt,rule", [
    (truncate_json, "record_schema"),
    (break_schema, "record_schema"),
    (change_phone, "phone_index"),
    (bad_vcard, "record_schema"),
])
def test_a_corrupted_record_is_named_by_its_path(
        datadir: DataDir, cli: InCli, corrupt: Callable[[DataDir], Path], rule: str) -> None:
    path = corrupt(datadir)
    result = validate(datadir.root)
    assert not result.passed
    assert [where for where, _ in result.rules[rule].failures][0] == str(path)
    proc = cli("validate", str(datadir.root))
    assert proc.returncode == 1
    assert f"\n  {rule}: {path}: " in proc.stdout
    assert f"\n{rule}: " in proc.stdout and "  FAILED " in proc.stdout
    assert proc.stdout.rstrip().endswith("INVALID")


def test_changed_phone_is_caught_by_every_cross_check(datadir: DataDir) -> None:
    path = change_phone(datadir)
    result = validate(datadir.root)
    assert result.rules["record_schema"].failed == 0  # still a valid document
    (missing, orphan) = result.rules["phone_index"].failures
    assert missing[0] == str(path) and "+254799999999 has no pointer" in missing[1]
    assert orphan[0].startswith(str(datadir.phone.root)) and "of no record's phone" in orphan[1]
    (users_fail,) = result.rules["users_csv"].failures
    assert "phone" in users_fail[1] and str(path) in users_fail[1]


def test_duplicate_phone(datadir: DataDir) -> None:
    users = list(datadir.users())
    second = datadir.src.path(users[1].address)
    doc2 = json.loads(second.read_bytes())
    doc2["vcard"] = json.loads(datadir.src.get(users[2].address))["vcard"]
    second.write_text(json.dumps(doc2))
    result = validate(datadir.root)
    assert result.rules["phone_unique"].failed == 1
    assert {w for w, _ in result.rules["phone_unique"].failures} <= {
        str(second), str(datadir.src.path(users[2].address))}


def test_csv_inconsistencies_are_counted(datadir: DataDir) -> None:
    lines = datadir.balances_csv.read_text().splitlines()
    lines[3] = lines[3].split(",")[0] + ",-5"
    lines.append("00" * 20 + ",10")
    datadir.balances_csv.write_text("\n".join(lines) + "\n")
    tags = datadir.tags_csv.read_text().splitlines()
    tags[0] = tags[0].split(",")[0] + ",individual"  # lost a tag
    datadir.tags_csv.write_text("\n".join(tags) + "\n")
    result = validate(datadir.root)
    assert result.rules["balances_csv"].failed == 2
    assert [w for w, _ in result.rules["tags_csv"].failures] == [f"{datadir.tags_csv}:1"]


def test_overdraft_and_manifest_mismatch(datadir: DataDir) -> None:
    rows = datadir.transactions_csv.read_text().splitlines()
    sender, recipient, _, offset = rows[0].split(",")
    rows[0] = f"{sender},{recipient},{10**30},{offset}"
    datadir.transactions_csv.write_text("\n".join(rows[:-1]) + "\n")
    result = validate(datadir.root)
    assert result.rules["transactions_csv"].failures[0][0] == f"{datadir.transactions_csv}:1"
    assert "overdraft" in result.rules["transactions_csv"].failures[0][1]
    assert any("transactions is 10 but transactions.csv has 9" in why
               for _, why in result.rules["manifest"].failures)


def test_missing_manifest(datadir: DataDir) -> None:
    datadir.manifest_path.unlink()
    result = validate(datadir.root)
    assert result.rules["manifest"].failed == 1
    assert "is missing" in result.rules["manifest"].failures[0][1]


def test_manifest_with_a_malformed_chain_spec_is_a_failure_not_a_crash(datadir: DataDir) -> None:
    manifest = json.loads(datadir.manifest_path.read_text())
    manifest["chain_spec"] = "nope"
    datadir.manifest_path.write_text(json.dumps(manifest))
    result = validate(datadir.root)
    assert "malformed chain spec" in result.rules["manifest"].failures[0][1]
    assert result.rules["record_key"].failed == COUNT
