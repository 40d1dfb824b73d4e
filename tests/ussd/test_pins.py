"""Seeded PINs for users created outside USSD: pins.csv, ``ussd-pins``/``ussd-data``, and the
verifier logging in with them."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from cic_seeding.datadir import DataDir
from cic_seeding.errors import UsageError
from cic_seeding.generate.keys import preferred_language
from cic_seeding.importers.cic_eth import CicEthImporter
from cic_seeding.importers.ussd_accounts import UssdPinsImporter
from cic_seeding.state import open_state_store
from cic_seeding.ussd.pins import check_pin, seeded_pin
from cic_seeding.ussd.texts import is_locked
from cic_seeding.verify import VerifyOptions, run_verify
from tests.custodial.world import make_data
from tests.helpers import run_cli, run_script
from tests.pg import PG_URL
from tests.ussd.world import Stack

USERS = 12


def _cli_env(stack: Stack) -> dict[str, str]:
    return {"CIC_USSD_DB_URL": PG_URL, "CIC_USSD_DB_SCHEMA": stack.schema}


def test_seeded_users_log_in_with_their_pins(stack: Stack, tmp_path: Path) -> None:
    data_dir = make_data(tmp_path, USERS, seed=4242)
    settings = stack.settings(data_dir)
    importer = CicEthImporter(settings)
    try:
        assert importer.run().confirmed == USERS
    finally:
        importer.close()

    made = run_script("create_import_pins.py", str(data_dir), "--rounds", "4")
    assert made.returncode == 0, made.stderr
    data = DataDir(data_dir)
    seed = data.manifest().seed
    with (data_dir / "pins.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert os.stat(data_dir / "pins.csv").st_mode & 0o777 == 0o600
    users = list(data.users())
    assert [r[0] for r in rows] == [u.phone for u in users]
    assert [r[1] for r in rows] == [seeded_pin(seed, u.index) for u in users]
    assert all(check_pin(r[1], r[2]) for r in rows[:3])

    # no USSD importer has these users yet: the USSD checks do not concern them
    with pytest.raises(UsageError, match=r"ussd does not apply \(users not registered "
                                         r"through USSD\)"):
        run_verify(settings, VerifyOptions(importer="cic_eth", include=("ussd",)))
    before = run_verify(settings, VerifyOptions(importer="cic_eth", include=("ussd", "imported")))
    assert before.not_applicable() == {"ussd": "users not registered through USSD"}

    args = (str(data_dir), "--devnet", str(stack.devnet.directory))  # as the issue writes it
    out = run_cli("import", "ussd-pins", *args, env=_cli_env(stack))
    assert out.returncode == 0, out.stderr + out.stdout
    got = dict((p, (s, lang)) for p, s, lang in stack.sql(
        "SELECT phone, status, language FROM ussd_accounts WHERE phone = ANY(%s)",
        ([u.phone for u in users],)))
    assert got == {u.phone: (2, preferred_language(seed, u.index)) for u in users}

    verify = run_verify(settings, VerifyOptions(importer="cic_eth",
                                                include=("ussd", "ussd_pins")))
    assert verify.ok, verify.render_text()
    assert verify.checks["ussd_pins"].ok == USERS

    # ussd-data keeps the PINs; a rerun of either is harmless
    stack.sql("UPDATE ussd_accounts SET status = 4 WHERE phone = %s RETURNING phone",
              (users[0].phone,))
    again = run_cli("import", "ussd-data", *args, env=_cli_env(stack))
    assert again.returncode == 0, again.stderr + again.stdout
    verify = run_verify(settings, VerifyOptions(importer="cic_eth",
                                                include=("ussd", "ussd_pins")))
    assert verify.ok, verify.render_text()
    with open_state_store(settings) as store:
        assert len(store.targets("ussd-pins")) == USERS
        assert UssdPinsImporter.sync_users(data, store) == {}  # the syncer pays nobody


def test_a_locked_account_fails_the_ussd_checks(stack: Stack, tmp_path: Path) -> None:
    data_dir = make_data(tmp_path, 3, seed=77)
    settings = stack.settings(data_dir)
    importer = CicEthImporter(settings)
    try:
        assert importer.run().confirmed == 3
    finally:
        importer.close()
    assert run_script("create_import_pins.py", str(data_dir), "--rounds", "4").returncode == 0
    out = run_cli("import", "ussd-pins", "--dir", str(data_dir), "--devnet",
                  str(stack.devnet.directory), env=_cli_env(stack))
    assert out.returncode == 0, out.stderr
    phone = next(DataDir(data_dir).users()).phone
    wrong = "0000" if seeded_pin(77, 0) != "0000" else "1111"
    with stack.client() as client:
        for _ in range(3):
            last = client.session(phone, ["1", wrong])[-1]
    assert last.end and is_locked(last.text)
    verify = run_verify(settings, VerifyOptions(importer="cic_eth",
                                                include=("ussd", "ussd_pins")))
    assert not verify.ok
    assert verify.checks["ussd"].failed == 1 and verify.checks["ussd"].ok == 2
    assert verify.checks["ussd_pins"].failed == 1
    address = next(DataDir(data_dir).users()).address.lower()
    assert (f"  ussd: 1 user -- its USSD account is locked (too many wrong PINs; reset it to "
            f"status 4) ({address}: {phone})") in verify.render_text().splitlines()


def test_pins_csv_missing_is_a_clear_error(stack: Stack, tmp_path: Path) -> None:
    data_dir = make_data(tmp_path, 2, seed=5)
    out = run_cli("import", "ussd-pins", "--dir", str(data_dir), "--devnet",
                  str(stack.devnet.directory), env=_cli_env(stack))
    assert out.returncode != 0
    assert "pins.csv does not exist" in out.stderr and "create_import_pins.py" in out.stderr
