from __future__ import annotations

import json
from pathlib import Path

import pytest

from cic_seeding.datadir import DataDir
from cic_seeding.generate.generator import GenerateOptions, generate
from cic_seeding.generate.validate import validate
from tests.helpers import run_cli


@pytest.fixture()
def datadir(tmp_path: Path) -> DataDir:
    generate(GenerateOptions(directory=tmp_path / "d", count=40, seed=3, transactions=10))
    return DataDir(tmp_path / "d")


def test_clean_directory_passes(datadir: DataDir) -> None:
    result = validate(datadir.root)
    assert result.passed
    assert result.rules["record_schema"].ok == 40


def test_corrupt_json_record_is_named(datadir: DataDir) -> None:
    victim = next(datadir.users()).address
    path = datadir.src.path(victim)
    path.write_bytes(path.read_bytes()[:-7])
    result = validate(datadir.root)
    assert not result.passed
    assert result.rules["record_schema"].failed == 1
    assert result.rules["record_schema"].failures[0][0] == str(path)
    proc = run_cli("validate", str(datadir.root))
    assert proc.returncode == 1
    assert str(path) in proc.stdout and "record_schema: 39/40" in proc.stdout


def test_schema_violation_and_duplicate_phone(datadir: DataDir) -> None:
    users = list(datadir.users())
    first = datadir.src.path(users[0].address)
    doc = json.loads(first.read_bytes())
    doc["gender"] = "unknown"
    first.write_text(json.dumps(doc))
    second = datadir.src.path(users[1].address)
    doc2 = json.loads(second.read_bytes())
    doc2["vcard"] = json.loads(datadir.src.get(users[2].address))["vcard"]
    second.write_text(json.dumps(doc2))
    result = validate(datadir.root)
    assert [w for w, _ in result.rules["record_schema"].failures] == [str(first)]
    assert "gender" in result.rules["record_schema"].failures[0][1]
    assert result.rules["phone_unique"].failed == 1


def test_csv_inconsistencies_are_counted(datadir: DataDir) -> None:
    lines = datadir.balances_csv.read_text().splitlines()
    lines[3] = lines[3].split(",")[0] + ",-5"
    lines.append("00" * 20 + ",10")
    datadir.balances_csv.write_text("\n".join(lines) + "\n")
    result = validate(datadir.root)
    assert result.rules["balances_csv"].failed == 2


def test_missing_manifest(datadir: DataDir) -> None:
    datadir.manifest_path.unlink()
    result = validate(datadir.root)
    assert result.rules["manifest"].failed == 1
    assert "is missing" in result.rules["manifest"].failures[0][1]
