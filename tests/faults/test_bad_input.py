"""The bad-input catalogue (issue 10): each kind of bad input, driven through the real CLI
against a real devnet (anvil), asserting the exact error line (or failure line), the exit code,
and that the other users were processed (per-user input) or nothing was written or sent
(global input).

Kinds covered: 49 -- 43 tested here and 6 marked ``*`` that older tests cover (named, not
repeated). ``[id]`` is a parameter of the test in the group heading.

    #  kind                                        command
    ----------------------------------------------------------------------------------------
    per user -- that user fails with its exact reason, the others are imported, exit 1
    test_a_bad_user_fails_alone[id]
     1 record failing the schema                   import eth        [schema]
     2 users.csv row without a person record       import eth        [no_record]
     3 address with a bad EIP-55 checksum          import eth        [bad_checksum]
     4 address the manifest seed does not derive   import eth        [underived_address]
     5 duplicate phone                             import (any)      [duplicate_phone]
     6 record without a balances.csv row           import, sync, verify [no_balance_row]
     7 negative balance                            import, sync, verify [negative_balance]
     8 non-integer balance                         import, sync, verify [fractional_balance]
     9 balance overflowing uint256                 import, sync, verify [overflowing_balance]
    10 balance in non-ASCII digits ('²')           import, sync, verify [unicode_digit_balance]
       (6-10: the sync pays the others and reports that user with its row's line and field;
       verify fails that user only)
    11 corrupt JSON record under new/              import cic_meta   test_a_corrupt_new_record_...
    12 balances.csv row without a user             sync, validate    test_a_balances_row_without_...
    13 balances.csv row removed after the import   sync              test_a_sync_refuses_a_...
    14 USSD gateway: unexpected first menu         import cic_ussd   test_a_ussd_gateway_...
    15 USSD gateway: unexpected menu midway        import cic_ussd   (the same test)
    16 * corrupt JSON record under src/            import eth        e2e/test_eth_bad_input.py
    17 * signer out of tokens                      sync              e2e/test_eth_bad_input.py
    18 * address registered by someone else        import eth        e2e/test_eth_bad_input.py

    global -- one error line, exit 1 (2: usage/config), nothing written or sent
    test_a_bad_data_directory_is_refused_before_anything_is_written[id]
    19 missing manifest                            import eth        [no_manifest]
    20 manifest from a future schema version       import eth        [future_manifest]
    21 manifest that is not JSON                   import eth        [manifest_not_json]
    22 missing users.csv                           import eth        [no_users_csv]
    23 malformed users.csv row                     import eth        [bad_users_row]
    24 users.csv not UTF-8                         import eth        [users_csv_not_utf8]
    25 missing balances.csv                        import eth        [no_balances_csv]
    test_a_bad_chain_or_signer_is_refused_before_anything_is_sent[id]
    26 wrong chain id                              import eth        [wrong_chain_id]
    27 registry address without a contract         import eth        [registry_without_code]
    28 registry address of another contract        import eth        [registry_not_a_registry]
    29 registry address with a bad checksum        import eth        [registry_bad_checksum]
    30 registry "address" that is not one          import eth        [registry_not_an_address]
    31 signer not a writer                         import eth        [signer_not_a_writer]
    32 signer out of gas                           import eth        [signer_without_gas]
    33 wrong keyfile password                      import eth        [wrong_password]
    34 keyfile missing                             import eth        [keyfile_missing]
    35 keyfile is a directory                      import eth        [keyfile_is_a_directory]
    36 keyfile not JSON                            import eth        [keyfile_not_json]
    37 keyfile not a v3 keyfile                    import eth        [keyfile_not_v3]
    38 keyfile password file missing               import eth        [password_file_missing]
    39 setting with an unknown value (KDF)         import eth        [unknown_kdf]
    others
    40 unknown token symbol                        sync              test_an_unknown_token_...
    41 non-writable data directory                 import eth        test_a_read_only_data_...
    42 disk full (a real 1 MiB tmpfs, filled)      import eth        test_a_full_disk_...
    43 metadata server answering 500               import cic_meta   test_a_meta_server_..._500...
    44 metadata server answering garbage (200)     import cic_meta   test_a_meta_server_..._garbage
    45 Redis (custodial broker) unreachable        import cic_eth    test_an_unreachable_redis_...
    46 PostgreSQL refuses the state store          import eth        test_a_postgresql_state_...
       (trust auth here, so an unknown role; and a wrong port)      [no_such_role], [wrong_port]
    47 * config file with an unknown key           any               unit/test_config.py
    48 * environment variable of the wrong type    any               unit/test_config.py
    49 * RPC node not there / gone mid-run         import, sync      e2e/test_eth_bad_input.py

The read-only directory is a read-only bind mount as root (permission bits do not stop root),
``chmod`` otherwise; the full disk is a real tmpfs (root only: elsewhere that test skips).

Errors are one line, ``error: <what>; <what to do>`` (``errors.py``); per-user failures are
``  failed <address>: <reason>`` lines under the run's summary.
"""

from __future__ import annotations

import base64
import http.server
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from eth_utils import to_checksum_address

from cic_devnet import anvil
from cic_devnet.devnet import Devnet
from cic_devnet.meta.process import MetaServerProcess
from cic_seeding.chain.keyfile import encrypt_v3
from cic_seeding.chain.registry import ACCOUNTS_INDEX, FAUCET
from cic_seeding.chain.signer import Signer
from cic_seeding.datadir import DataDir, UserRow
from cic_seeding.generate.generator import GenerateOptions, generate
from cic_seeding.generate.keys import preferred_language
from cic_seeding.importers.cic_ussd import registration_screens
from cic_seeding.meta.client import MetaClient
from cic_seeding.records.pointers import person_pointer
from cic_seeding.state import open_state_store
from tests.conftest import devnet_settings
from tests.e2e.procs import files_in, users_in
from tests.faults._chain import network, registered, token_balances
from tests.faults._fs import full_disk, read_only
from tests.generate._incli import InCli, Run
from tests.helpers import free_port, http_server, the_error_line
from tests.pg import PG_URL

COUNT = 8
VICTIM = 3  # index of the user a per-user corruption hits


# -- helpers ---------------------------------------------------------------------------------
def make_data(root: Path, seed: int, count: int = COUNT) -> DataDir:
    directory = root / "data"
    generate(GenerateOptions(directory=directory, count=count, seed=seed, workers=1))
    return DataDir(directory)


def nonce(devnet: Devnet, address: str) -> int:
    return int(anvil.rpc(devnet.rpc_url, "eth_getTransactionCount", [address, "latest"]), 16)


def failures(stdout: str) -> dict[str, str]:
    """``{address (lower case): reason}`` of the ``  failed ADDRESS: REASON`` lines of a run's
    report."""
    out = {}
    for line in stdout.splitlines():
        if line.startswith("  failed "):
            address, _, reason = line.removeprefix("  failed ").partition(": ")
            out[address.lower()] = reason
    return out


def assert_nothing_written(data: DataDir, devnet: Devnet, addresses: list[str]) -> None:
    """No keyfile, transaction or new/ record on disk, no user marked in the state store, and
    none of ``addresses`` (the data directory's users) registered on chain."""
    for sub in ("keystore", "tx", "new"):
        assert files_in(data.root / sub) == 0, sub
    assert users_in(data.root, "submitted", "confirmed", "failed") == 0
    assert registered(devnet, addresses) == set()


def import_eth(cli: InCli, data: DataDir, devnet: Devnet, *extra: str,
               env: dict[str, str] | None = None) -> Run:
    return cli("import", "eth", "--dir", str(data.root), "--devnet", str(devnet.directory),
               *extra, env=env)


def rewrite_csv(path: Path, key_of: Callable[[list[str]], str], key: str,
                new: list[str] | None) -> None:
    """Replace (or with None drop) the row of ``path`` whose key is ``key``."""
    rows = [line.split(",") for line in path.read_text(encoding="utf-8").splitlines()]
    out = [(new if key_of(r) == key else r) for r in rows]
    path.write_text("".join(",".join(r) + "\n" for r in out if r is not None), encoding="utf-8")


def set_users_row(data: DataDir, user: UserRow, address: str, phone: str) -> None:
    rewrite_csv(data.users_csv, lambda r: r[0], str(user.index),
                [str(user.index), address, phone])


def set_balance(data: DataDir, user: UserRow, value: str | None) -> None:
    key = user.address.lower().removeprefix("0x")
    rewrite_csv(data.balances_csv, lambda r: r[0], key, None if value is None else [key, value])


def keyfile_of(data: DataDir, address: str) -> Path:
    return data.keystore / f"{address.lower().removeprefix('0x')}.json"


# -- per-user bad input: that user fails with its reason, the others are imported -------------
@dataclass(frozen=True)
class Bad:
    """One per-user corruption: ``apply`` breaks the data directory and returns the address
    the run reports and the exact reason it gives."""

    apply: Callable[[DataDir, list[UserRow]], tuple[str, str]]
    #: What the sync reports for that user (None: the sync is not concerned).
    sync_reason: Callable[[DataDir, UserRow], str] | None = None


def _schema(data: DataDir, users: list[UserRow]) -> tuple[str, str]:
    victim = users[VICTIM]
    path = data.src.path(victim.address)
    doc = json.loads(path.read_bytes())
    doc["gender"] = "robot"
    path.write_text(json.dumps(doc))
    return victim.address, (f"person record {path} fails the schema: gender: 'robot' is not "
                            "one of ['female', 'male', 'other']")


def _no_record(data: DataDir, users: list[UserRow]) -> tuple[str, str]:
    victim = users[VICTIM]
    path = data.src.path(victim.address)
    path.unlink()
    return victim.address, f"no person record at {path}"


def _bad_checksum(data: DataDir, users: list[UserRow]) -> tuple[str, str]:
    victim = users[VICTIM]
    chars = list(victim.address)
    at = next(i for i, c in enumerate(chars) if i > 1 and c.isalpha())
    chars[at] = chars[at].swapcase()
    typo = "".join(chars)
    set_users_row(data, victim, typo, victim.phone)
    return typo, (f"address {typo} (users.csv index {VICTIM}) fails its EIP-55 checksum: a "
                  "character may be mistyped; fix users.csv or regenerate")


def _underived_address(data: DataDir, users: list[UserRow]) -> tuple[str, str]:
    victim = users[VICTIM]
    other = to_checksum_address(f"0x{int(victim.address, 16) ^ 0xFF:040x}")
    data.src.put(other, data.src.get(victim.address))
    data.src.path(victim.address).unlink()
    set_users_row(data, victim, other, victim.phone)
    rewrite_csv(data.balances_csv, lambda r: r[0], victim.address.lower()[2:],
                [other.lower()[2:], "1000"])
    return other, (f"users.csv says index {VICTIM} is {other}, but the manifest seed derives "
                   f"{victim.address}: the data directory is inconsistent")


def _duplicate_phone(data: DataDir, users: list[UserRow]) -> tuple[str, str]:
    owner, victim = users[2], users[VICTIM]
    path = data.src.path(victim.address)
    doc = json.loads(path.read_bytes())
    card = base64.b64decode(doc["vcard"]).decode().replace(victim.phone, owner.phone)
    doc["vcard"] = base64.b64encode(card.encode()).decode()
    path.write_text(json.dumps(doc))
    set_users_row(data, victim, victim.address, owner.phone)
    return victim.address, (
        f"phone {owner.phone} of {victim.address} (users.csv index {VICTIM}) is already the "
        f"phone of {owner.address} (index 2); phones must be unique: fix the data directory "
        "(`cic-seed validate DIR`)")


def _no_balance_row(data: DataDir, users: list[UserRow]) -> tuple[str, str]:
    victim = users[VICTIM]
    set_balance(data, victim, None)
    return victim.address, (f"no opening balance for {victim.address} in {data.balances_csv}; "
                            "add its row or regenerate (`cic-seed validate DIR` lists every gap)")


def _no_balance_row_in_sync(data: DataDir, victim: UserRow) -> str:
    return (f"no opening balance for {victim.address.lower()} in {data.balances_csv}; add its "
            "row (or regenerate), then rerun")


def _balance(value: str) -> Bad:
    digits = value.isascii() and value.isdigit()
    problem = (f"{value[:40]!r} is not below 2**256" if digits else
               f"{value!r} is not a whole number (digits 0-9 only, in the smallest unit)")

    def row(data: DataDir) -> str:
        return f"balances.csv line {VICTIM + 1}, field amount: {problem}"

    def apply(data: DataDir, users: list[UserRow]) -> tuple[str, str]:
        victim = users[VICTIM]
        set_balance(data, victim, value)
        return victim.address, (f"opening balance of {victim.address} cannot be read: "
                                f"{row(data)}; fix the row or regenerate")

    def sync_reason(data: DataDir, victim: UserRow) -> str:
        return (f"opening balance of {victim.address.lower()} cannot be read: {row(data)}; "
                "fix the row (or regenerate), then rerun")

    return Bad(apply, sync_reason)


PER_USER = {
    "schema": Bad(_schema),
    "no_record": Bad(_no_record),
    "bad_checksum": Bad(_bad_checksum),
    "underived_address": Bad(_underived_address),
    "duplicate_phone": Bad(_duplicate_phone),
    "no_balance_row": Bad(_no_balance_row, _no_balance_row_in_sync),
    "negative_balance": _balance("-5"),
    "fractional_balance": _balance("1.5"),
    "overflowing_balance": _balance(str(2**256)),
    "unicode_digit_balance": _balance("\u00b2"),  # '²': str.isdigit() says yes, int() says no
}


@pytest.mark.parametrize("kind", list(PER_USER))
def test_a_bad_user_fails_alone(cli: InCli, module_devnet: Devnet, tmp_path: Path,
                                kind: str) -> None:
    seed = 10_000 + list(PER_USER).index(kind)
    data = make_data(tmp_path, seed)
    users = list(data.users())
    address, reason = PER_USER[kind].apply(data, users)
    victim = users[VICTIM]
    others = [u.address for u in users if u is not victim]

    run = import_eth(cli, data, module_devnet)
    assert run.returncode == 1, run
    assert "error: " not in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert failures(run.stdout) == {address.lower(): reason}, run.stdout
    assert run.stdout.startswith(f"eth: {COUNT - 1} users imported this run (0 already on "
                                 "chain), 0 before, 1 failed, 0 left, "), run.stdout
    assert registered(module_devnet, [u.address for u in users] + [address]) == set(others)
    assert not keyfile_of(data, address).exists() and not keyfile_of(data, victim.address).exists()
    assert not data.new.has(address) and not data.new.has(victim.address)

    sync_reason = PER_USER[kind].sync_reason
    if sync_reason is not None:  # a bad balances.csv row: that user is quarantined, not the run
        run = cli("sync", "eth", "--dir", str(data.root), "--devnet",
                  str(module_devnet.directory), "--timeout", "30", "--poll", "0.05")
        assert run.returncode == 1 and "7/8 users paid, 1 failed" in run.stdout, run
        assert "error: " not in run.stderr, run.stderr
        assert (f"  failed {victim.address.lower()} fund: {sync_reason(data, victim)}"
                in run.stdout.splitlines()), run.stdout
        faucet = network(module_devnet).client.call(network(module_devnet).faucet,
                                                    FAUCET.fn("tokenAmount"))
        opening = data.read_balances().values
        assert token_balances(module_devnet, others) == {
            a: opening[a.lower()[2:]] + faucet for a in others}
        assert_verify_names_only(cli, data, module_devnet, victim)


def test_a_sync_after_a_failed_import_stops_waiting_for_that_user(
        cli: InCli, module_devnet: Devnet, tmp_path: Path) -> None:
    """The user whose import failed cannot register until a rerun of the import: a sync
    (without --follow) stops waiting once only such users are left, names them and exits 1;
    it does not wait out its timeout (or, without one, forever)."""
    data = make_data(tmp_path, 10_050)
    users = list(data.users())
    address, reason = PER_USER["schema"].apply(data, users)
    assert import_eth(cli, data, module_devnet).returncode == 1

    run = cli("sync", "eth", "--dir", str(data.root), "--devnet", str(module_devnet.directory),
              "--timeout", "300", "--poll", "0.05")
    assert run.returncode == 1, run
    assert run.stdout.startswith(f"sync eth: incomplete: {COUNT - 1}/{COUNT} users paid, 0 "
                                 "failed, 1 not registered yet (1 of them: import failed)"), \
        run.stdout
    assert (f"  failed {address.lower()} import: its import failed ({reason}); fix that and "
            "rerun `import eth`, then sync") in run.stdout.splitlines(), run.stdout


def test_a_rerun_with_another_keystore_password_is_refused_before_anything_is_sent(
        cli: InCli, module_devnet: Devnet, tmp_path: Path) -> None:
    data = make_data(tmp_path, 10_060, count=4)
    assert import_eth(cli, data, module_devnet).returncode == 0
    generate(GenerateOptions(directory=data.root, count=4, mode="append", workers=1))
    added = [u.address for u in data.users()][4:]
    earlier = {str(p) for p in data.keystore.iterdir()}

    run = import_eth(cli, data, module_devnet, env={"CIC_KEYSTORE_PASSWORD": "not-the-same"})
    assert run.returncode == 2, run
    named = re.fullmatch(
        r"error: the keystore password does not open (\S+), written by an earlier run: this "
        r"run would encrypt its users' keys under another password; give the password the "
        r"earlier runs used \(keystore_password, CIC_KEYSTORE_PASSWORD\)",
        the_error_line(run.stderr))
    assert named is not None and named.group(1) in earlier, run.stderr
    assert "not-the-same" not in run.stdout + run.stderr
    assert registered(module_devnet, added) == set()
    assert not any(keyfile_of(data, a).exists() for a in added)

    assert import_eth(cli, data, module_devnet).returncode == 0  # the earlier runs' password
    assert registered(module_devnet, added) == set(added)


def assert_verify_names_only(cli: InCli, data: DataDir, devnet: Devnet, victim: UserRow) -> None:
    """verify exits 1; every failure of every check is the victim's, everyone else passes."""
    run = cli("verify", str(data.root), "--devnet", str(devnet.directory), "--format", "json")
    assert run.returncode == 1, run
    checks = json.loads(run.stdout)["checks"]
    ran = {c: r for c, r in checks.items() if r["status"] in ("passed", "failed")}
    assert set(ran) == {"accounts_index", "balance", "faucet", "gas", "imported", "local_key"}
    for cid, r in ran.items():
        assert [f["address"] for f in r["failures"]] == [victim.address.lower()], cid
        assert (r["ok"], r["problems"]) == (COUNT - 1, []), cid
    balance = checks["balance"]["failures"][0]
    problem = data.read_balances().problem(victim.address)
    if problem is None:
        assert (balance["reason"], balance["detail"]) == (
            "it has no row in balances.csv", "")
    else:
        assert (balance["reason"], balance["detail"]) == (
            "its balances.csv row cannot be read", str(problem))
    text = cli("verify", str(data.root), "--devnet", str(devnet.directory))
    named = victim.address.lower() + (f": {balance['detail']}" if balance["detail"] else "")
    assert f"  balance: 1 user -- {balance['reason']} ({named})" in text.stdout.splitlines(), \
        text.stdout


def test_a_corrupt_new_record_fails_that_user_only(cli: InCli, module_devnet: Devnet,
                                                   meta: MetaServerProcess,
                                                   tmp_path: Path) -> None:
    data = make_data(tmp_path, 10_100, count=5)
    assert import_eth(cli, data, module_devnet).returncode == 0
    users = list(data.users())
    victim = users[1]
    data.new.path(victim.address).write_bytes(b"{broken")

    run = cli("import", "cic_meta", "--dir", str(data.root), "--devnet",
              str(module_devnet.directory), env=meta_env(meta.url, meta.token))
    assert run.returncode == 1 and "Traceback" not in run.stderr, run
    assert failures(run.stdout) == {victim.address.lower(): (
        f"its new/ record cannot be read: {data.new.path(victim.address)} (JSONDecodeError: "
        "Expecting property name enclosed in double quotes: line 1 column 2 (char 1))")}
    with MetaClient(meta.url) as client:
        for user in users:
            got = client.get(person_pointer(user.address))
            if user is victim:
                assert got is None
            else:
                assert got == json.loads(data.new.get(user.address))


def test_a_balances_row_without_a_user_pays_nobody(cli: InCli, module_devnet: Devnet,
                                                   tmp_path: Path) -> None:
    data = make_data(tmp_path, 10_200, count=4)
    stray = to_checksum_address("0x" + "5a" * 20)
    with data.balances_csv.open("a", encoding="utf-8") as fh:
        fh.write(f"{stray.lower()[2:]},777\n")
    assert import_eth(cli, data, module_devnet).returncode == 0
    run = cli("sync", "eth", "--dir", str(data.root), "--devnet", str(module_devnet.directory),
              "--timeout", "30", "--poll", "0.05")
    assert run.returncode == 0, run
    assert token_balances(module_devnet, [stray]) == {stray: 0}
    run = cli("validate", str(data.root))
    assert run.returncode == 1
    assert f"  balances_csv: {data.balances_csv}:5: row without a record, or a duplicate row" \
        in run.stdout.splitlines()


def test_a_sync_refuses_a_registered_user_without_a_balance_row(
        cli: InCli, module_devnet: Devnet, tmp_path: Path) -> None:
    data = make_data(tmp_path, 10_300, count=4)
    assert import_eth(cli, data, module_devnet).returncode == 0
    victim = list(data.users())[1]
    set_balance(data, victim, None)  # removed after the import registered the user
    run = cli("sync", "eth", "--dir", str(data.root), "--devnet", str(module_devnet.directory),
              "--timeout", "300", "--poll", "0.05")
    assert run.returncode == 1
    assert victim.address.lower() in run.stdout.lower() and "balances.csv" in run.stdout


# -- global bad input: refused before anything is written or sent ----------------------------
def _no_manifest(data: DataDir) -> str:
    data.manifest_path.unlink()
    return (f"error: {data.manifest_path} is missing: {data.root} is not a generated data "
            "directory; run `cic-seed generate --dir DIR COUNT` first")


def _future_manifest(data: DataDir) -> str:
    doc = json.loads(data.manifest_path.read_text())
    doc["schema_version"] = 2
    data.manifest_path.write_text(json.dumps(doc))
    return (f"error: {data.manifest_path} has schema version 2; this cic-seeding reads up to "
            "1; upgrade cic-seeding or regenerate the data")


def _manifest_not_json(data: DataDir) -> str:
    data.manifest_path.write_text("{seed: 1")
    return (f"error: {data.manifest_path} cannot be read as JSON: Expecting property name "
            "enclosed in double quotes: line 1 column 2 (char 1)")


def _no_users_csv(data: DataDir) -> str:
    data.users_csv.unlink()
    return (f"error: {data.users_csv} is missing: {data.root} is not a complete data directory; "
            "regenerate it with `cic-seed generate --dir DIR COUNT`")


def _bad_users_row(data: DataDir) -> str:
    lines = data.users_csv.read_text().splitlines()
    lines[2] = "2;" + lines[2].split(",")[1]
    data.users_csv.write_text("\n".join(lines) + "\n")
    return (f"error: {data.users_csv}:3: expected index,address,phone; fix the row or "
            "regenerate; `cic-seed validate DIR` lists every bad row")


def _users_row_not_an_address(data: DataDir) -> str:
    lines = data.users_csv.read_text().splitlines()
    index, _, phone = lines[1].split(",")
    lines[1] = f"{index},0xZZZZ,{phone}"
    data.users_csv.write_text("\n".join(lines) + "\n")
    return (f"error: {data.users_csv}:2: '0xZZZZ' is not an address (0x and 40 hex digits); "
            "fix the row or regenerate; `cic-seed validate DIR` lists every bad row")


def _users_csv_not_utf8(data: DataDir) -> str:
    size = data.users_csv.stat().st_size
    with data.users_csv.open("ab") as fh:
        fh.write(b"\xff\xfe\n")
    return (f"error: {data.users_csv} is not a UTF-8 csv file: 'utf-8' codec can't decode byte "
            f"0xff in position {size}: invalid start byte; fix it or regenerate; `cic-seed "
            "validate DIR` lists every bad row")


def _no_balances_csv(data: DataDir) -> str:
    data.balances_csv.unlink()
    return (f"error: {data.balances_csv} is missing: {data.root} is not a complete data "
            "directory; regenerate it with `cic-seed generate --dir DIR COUNT`")


GLOBAL_DATA = {
    "no_manifest": _no_manifest, "future_manifest": _future_manifest,
    "manifest_not_json": _manifest_not_json, "no_users_csv": _no_users_csv,
    "bad_users_row": _bad_users_row, "users_row_not_an_address": _users_row_not_an_address,
    "users_csv_not_utf8": _users_csv_not_utf8,
    "no_balances_csv": _no_balances_csv,
}


@pytest.mark.parametrize("kind", list(GLOBAL_DATA))
def test_a_bad_data_directory_is_refused_before_anything_is_written(
        cli: InCli, module_devnet: Devnet, tmp_path: Path, kind: str) -> None:
    data = make_data(tmp_path, 10_400 + list(GLOBAL_DATA).index(kind), count=4)
    addresses = [u.address for u in data.users()]
    expected = GLOBAL_DATA[kind](data)
    run = import_eth(cli, data, module_devnet)
    assert run.returncode == 1
    assert the_error_line(run.stderr) == expected
    assert_nothing_written(data, module_devnet, addresses)


@dataclass(frozen=True)
class Chain:
    """A bad chain setting or signer: the flags and environment, the exact line, the exit code
    and the signer whose nonce must not move (None: no signer got that far)."""

    args: list[str]
    env: dict[str, str]
    line: str
    code: int
    signer: str | None = None


def _devnet_args(devnet: Devnet) -> list[str]:
    return ["--devnet", str(devnet.directory)]


def _explicit(devnet: Devnet, registry: str, keyfile: Path) -> list[str]:
    return ["-p", devnet.rpc_url, "-r", registry, "-y", str(keyfile)]


def _signer_keyfile(tmp: Path, devnet: Devnet, key_index: int, wei: int) -> tuple[Path, str]:
    signer = Signer.from_key(anvil.dev_key(key_index))
    anvil.rpc(devnet.rpc_url, "anvil_setBalance", [signer.address, hex(wei)])
    path = tmp / f"signer{key_index}.json"
    path.write_text(json.dumps(encrypt_v3(bytes.fromhex(anvil.dev_key(key_index)
                                                        .removeprefix("0x")), "pw", n=2**8)))
    return path, signer.address


def _chain_cases(devnet: Devnet, tmp: Path) -> dict[str, Chain]:
    net = network(devnet)
    index, registry, rpc = net.accounts_index, net.registry, devnet.rpc_url
    deployer = devnet.directory / "deployer.json"
    pw = {"CIC_KEYFILE_PASSWORD_FILE": str(devnet.directory / "deployer.pw")}
    me = Signer.from_key(anvil.dev_key(0)).address
    writer_less, other = _signer_keyfile(tmp, devnet, 5, 10**18)
    gasless, broke = _signer_keyfile(tmp, devnet, 6, 0)
    typo = registry[:2] + registry[2:].swapcase()
    (tmp / "not.json").write_text("not json")
    (tmp / "notv3.json").write_text('{"version": 3}')
    (tmp / "adir").mkdir()
    x = {"CIC_KEYFILE_PASSWORD": "x"}
    return {
        "wrong_chain_id": Chain(
            _devnet_args(devnet), {"CIC_CHAIN_SPEC": "evm:byzantium:1:mainnet"},
            f"error: the node at {rpc} has chain id 8996, but the chain spec "
            "evm:byzantium:1:mainnet (from env CIC_CHAIN_SPEC) says 1; point --devnet / -p at "
            "the chain the spec names, or name the node's chain with -i / --chain-spec "
            "(CIC_CHAIN_SPEC)", 2, me),
        "registry_without_code": Chain(
            _explicit(devnet, "0x000000000000000000000000000000000000dEaD", deployer), pw,
            "error: no contract at registry address 0x000000000000000000000000000000000000dEaD "
            f"on {rpc}; check -r / CIC_REGISTRY_ADDRESS (or --devnet DIR)", 1, me),
        "registry_not_a_registry": Chain(
            _explicit(devnet, index, deployer), pw,
            f"error: the contract at registry address {index} does not answer "
            f"addressOf('AccountRegistry') (addressOf on {index} failed: ", 1, me),
        "registry_bad_checksum": Chain(
            _explicit(devnet, typo, deployer), pw,
            f"error: registry address {typo} fails its EIP-55 checksum: a character may be "
            "mistyped; copy the address again (all lower case skips the check)", 2, me),
        "registry_not_an_address": Chain(
            _explicit(devnet, "0x1234", deployer), pw,
            "error: registry address '0x1234' is not an address (0x and 40 hex characters)",
            2, me),
        "signer_not_a_writer": Chain(
            _explicit(devnet, registry, writer_less), {"CIC_KEYFILE_PASSWORD": "pw"},
            f"error: the signer {other} is not a writer of the AccountsIndex {index}; ask its "
            f"owner to call addWriter({other}), or sign with a writer (-y KEYFILE)", 1, other),
        "signer_without_gas": Chain(
            _explicit(devnet, registry, gasless), {"CIC_KEYFILE_PASSWORD": "pw"},
            f"error: the signer {broke} has no gas (native balance 0) on {rpc}; send it some "
            "native coin, then rerun", 1, broke),
        "wrong_password": Chain(
            _devnet_args(devnet), {"CIC_KEYFILE_PASSWORD": "wrong"},
            f"error: wrong password for keyfile {deployer}; check CIC_KEYFILE_PASSWORD or "
            "CIC_KEYFILE_PASSWORD_FILE", 1, me),
        "keyfile_missing": Chain(
            _explicit(devnet, registry, tmp / "none.json"), x,
            f"error: cannot read keyfile {tmp / 'none.json'}: No such file or directory; check "
            "-y / CIC_KEYFILE", 1),
        "keyfile_is_a_directory": Chain(
            _explicit(devnet, registry, tmp / "adir"), x,
            f"error: cannot read keyfile {tmp / 'adir'}: Is a directory; check -y / "
            "CIC_KEYFILE", 1),
        "keyfile_not_json": Chain(
            _explicit(devnet, registry, tmp / "not.json"), x,
            f"error: keyfile {tmp / 'not.json'} is not JSON (expected a v3 keyfile)", 1),
        "keyfile_not_v3": Chain(
            _explicit(devnet, registry, tmp / "notv3.json"), x,
            f"error: keyfile {tmp / 'notv3.json'} is not a valid v3 keyfile (missing 'crypto')",
            1),
        "password_file_missing": Chain(
            _explicit(devnet, registry, deployer),
            {"CIC_KEYFILE_PASSWORD_FILE": str(tmp / "none.pw")},
            f"error: cannot read the keyfile {deployer} password file {tmp / 'none.pw'}: No "
            "such file or directory", 2),
        "unknown_kdf": Chain(
            _devnet_args(devnet), {"CIC_KEYSTORE_KDF": "heavy"},
            "error: keystore_kdf must be one of light, production, got 'heavy'", 2, me),
    }


CHAIN_KINDS = ["wrong_chain_id", "registry_without_code", "registry_not_a_registry",
               "registry_bad_checksum", "registry_not_an_address", "signer_not_a_writer",
               "signer_without_gas", "wrong_password", "keyfile_missing",
               "keyfile_is_a_directory", "keyfile_not_json", "keyfile_not_v3",
               "password_file_missing", "unknown_kdf"]


@pytest.mark.parametrize("kind", CHAIN_KINDS)
def test_a_bad_chain_or_signer_is_refused_before_anything_is_sent(
        cli: InCli, module_devnet: Devnet, tmp_path: Path, kind: str) -> None:
    data = make_data(tmp_path, 10_500 + CHAIN_KINDS.index(kind), count=4)
    addresses = [u.address for u in data.users()]
    case = _chain_cases(module_devnet, tmp_path)[kind]
    before = nonce(module_devnet, case.signer) if case.signer else None
    run = cli("import", "eth", "--dir", str(data.root), *case.args, env=case.env)
    assert run.returncode == case.code, run
    line = the_error_line(run.stderr)
    if kind == "registry_not_a_registry":  # the node's own words sit in the middle
        assert line.startswith(case.line), line
        assert line.endswith("): it is not a CIC registry; check -r / CIC_REGISTRY_ADDRESS (or "
                             "--devnet DIR)"), line
    else:
        assert line == case.line
    assert_nothing_written(data, module_devnet, addresses)
    if case.signer:
        assert nonce(module_devnet, case.signer) == before


def test_an_unknown_token_symbol_pays_nobody(cli: InCli, module_devnet: Devnet,
                                             tmp_path: Path) -> None:
    data = make_data(tmp_path, 10_600, count=3)
    assert import_eth(cli, data, module_devnet).returncode == 0
    run = cli("sync", "eth", "--dir", str(data.root), "--devnet", str(module_devnet.directory),
              "--token-symbol", "GTF", "--timeout", "30")
    assert run.returncode == 1
    index = network(module_devnet).token_index
    assert the_error_line(run.stderr) == (
        f"error: token symbol 'GTF' is not in the token index at {index}; did you mean GFT? "
        "registered symbols: GFT")
    addresses = [u.address for u in data.users()]
    assert set(token_balances(module_devnet, addresses).values()) == {0}


# -- the file system refuses --------------------------------------------------------------
def test_a_read_only_data_directory_is_one_line_and_a_rerun_completes(
        cli: InCli, module_devnet: Devnet, tmp_path: Path) -> None:
    data = make_data(tmp_path, 10_700, count=4)
    state = {"CIC_STATE_URL": str(tmp_path / "state.db")}
    with read_only(data.root) as why:
        run = import_eth(cli, data, module_devnet)  # the state store in the data directory
        assert run.returncode == 1
        assert the_error_line(run.stderr) == (
            f"error: cannot open the state store {data.root}/state.db: unable to open database "
            "file; check the path and its permissions, or set CIC_STATE_URL")
        run = import_eth(cli, data, module_devnet, env=state)  # the state store elsewhere
        assert run.returncode == 1
        assert the_error_line(run.stderr) == (
            f"error: data directory {data.root}: {why}: {data.keystore}; make the data "
            "directory writable, then rerun: the import resumes where it stopped")
    addresses = [u.address for u in data.users()]
    assert registered(module_devnet, addresses) == set()
    run = import_eth(cli, data, module_devnet, env=state)
    assert run.returncode == 0, run
    assert registered(module_devnet, addresses) == set(addresses)


def test_a_full_disk_is_one_line_and_a_rerun_completes(cli: InCli, module_devnet: Devnet,
                                                       tmp_path: Path) -> None:
    env = {"CIC_STATE_URL": str(tmp_path / "state.db"), "CIC_WORKERS": "1"}
    with full_disk(tmp_path / "disk") as disk:
        data = make_data(disk.mountpoint, 10_800, count=12)
        users = list(data.users())
        addresses = [u.address for u in users]
        net = network(module_devnet)
        entries = net.client.call(net.accounts_index, ACCOUNTS_INDEX.fn("entryCount"))
        disk.fill()
        run = import_eth(cli, data, module_devnet, env=env)
        assert run.returncode == 1
        assert the_error_line(run.stderr) == (
            f"error: data directory {data.root}: {disk.strerror}: "
            f"{keyfile_of(data, users[0].address)}; free space, then rerun: the import resumes "
            "where it stopped")
        assert registered(module_devnet, addresses) == set()
        assert list(data.keystore.iterdir()) == []  # no half-written keyfile left behind
        disk.free()
        run = import_eth(cli, data, module_devnet, env=env)
        assert run.returncode == 0, run
        assert registered(module_devnet, addresses) == set(addresses)
        assert net.client.call(net.accounts_index,
                               ACCOUNTS_INDEX.fn("entryCount")) == entries + len(users)
        assert files_in(data.keystore) == files_in(data.new.root) == len(users)


# -- services that answer wrongly or not at all ---------------------------------------------
def meta_env(url: str, token: str) -> dict[str, str]:
    return {"CIC_META_URL": url, "CIC_META_TOKEN": token, "CIC_META_RETRIES": "1"}


@contextmanager
def fake_server(answer: Callable[[str, str, bytes], tuple[int, bytes]]) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 whose every answer is ``answer(method, path, body)``;
    yields its URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _any(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            status, reply = answer(self.command, self.path, body)
            self.send_response(status)
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        do_GET = do_PUT = do_POST = _any

        def log_message(self, *args: object) -> None:
            pass

    with http_server(Handler) as url:
        yield url


def _imported(cli: InCli, devnet: Devnet, tmp_path: Path, seed: int) -> DataDir:
    data = make_data(tmp_path, seed, count=4)
    assert import_eth(cli, data, devnet).returncode == 0
    return data


def _documents_on(meta: MetaServerProcess, data: DataDir) -> int:
    with MetaClient(meta.url) as client:
        return sum(client.get(person_pointer(u.address)) is not None for u in data.users())


def test_a_meta_server_answering_500_is_one_line_and_a_rerun_completes(
        cli: InCli, module_devnet: Devnet, meta: MetaServerProcess, tmp_path: Path) -> None:
    data = _imported(cli, module_devnet, tmp_path, 10_900)
    args = ("import", "cic_meta", "--dir", str(data.root), "--devnet",
            str(module_devnet.directory))
    with fake_server(lambda m, p, b: (500, b'{"error": "boom"}')) as url:
        run = cli(*args, env=meta_env(url, "a-long-enough-token"))
    assert run.returncode == 1
    line = the_error_line(run.stderr)  # after the retries, or once the breaker opens
    assert line.startswith("error: ") and f"PUT {url}/" in line, line
    assert "answered 500: boom" in line and "CIC_META_URL" in line, line
    assert line.endswith("an import resumes where it stopped"), line
    assert failures(run.stdout) == {}
    run = cli(*args, env=meta_env(meta.url, meta.token))  # the real server: nothing was lost
    assert run.returncode == 0, run
    assert _documents_on(meta, data) == 4


def test_a_meta_server_answering_garbage(cli: InCli, module_devnet: Devnet,
                                         tmp_path: Path) -> None:
    data = _imported(cli, module_devnet, tmp_path, 10_910)
    with fake_server(lambda m, p, b: (200, b"<html>hello</html>")) as url:
        run = cli("import", "cic_meta", "--dir", str(data.root), "--devnet",
                  str(module_devnet.directory), env=meta_env(url, "a-long-enough-token"))
    assert run.returncode == 1
    line = the_error_line(run.stderr)
    assert line.startswith(f"error: metadata server {url} answered PUT /") and "not JSON" in line


def test_an_unreachable_redis_is_one_line(cli: InCli, module_devnet: Devnet,
                                          tmp_path: Path) -> None:
    data = make_data(tmp_path, 11_000, count=3)
    addresses = [u.address for u in data.users()]
    port = free_port()
    run = cli("import", "cic_eth", "--dir", str(data.root), "--devnet",
              str(module_devnet.directory),
              env={"CIC_CUSTODIAL_BROKER_URL": f"redis://127.0.0.1:{port}/0"})
    assert run.returncode == 1
    line = the_error_line(run.stderr)
    assert line.startswith(f"error: cannot reach the custodial engine's broker "
                           f"redis://127.0.0.1:{port}/0: "), line
    assert "Connection refused" in line and "CIC_CUSTODIAL_BROKER_URL" in line, line
    assert_nothing_written(data, module_devnet, addresses)


def _pg(url: str, *, user: str | None = None, port: int | None = None) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    return f"postgresql://{user or parts.username}@{host}:{port or parts.port}{parts.path}"


@pytest.mark.parametrize("kind", ["no_such_role", "wrong_port"])
def test_a_postgresql_state_store_that_refuses_is_one_line(
        cli: InCli, module_devnet: Devnet, tmp_path: Path, kind: str) -> None:
    data = make_data(tmp_path, 11_100 + (kind == "wrong_port"), count=3)
    addresses = [u.address for u in data.users()]
    host = urlsplit(PG_URL).hostname
    if kind == "no_such_role":  # trust authentication here: an unknown role is what fails
        url = _pg(PG_URL, user="nosuchrole")
        why = (f'connection to server at "{host}", port {urlsplit(PG_URL).port} failed: FATAL:  '
               'role "nosuchrole" does not exist')
    else:
        port = free_port()
        url = _pg(PG_URL, port=port)
        why = (f'connection to server at "{host}", port {port} failed: Connection refused Is '
               "the server running on that host and accepting TCP/IP connections?")
    run = import_eth(cli, data, module_devnet, env={"CIC_STATE_URL": url})
    assert run.returncode == 1
    assert the_error_line(run.stderr) == (
        f"error: cannot open the state store {url}: {why}; check CIC_STATE_URL and that "
        "PostgreSQL is running")
    assert_nothing_written(data, module_devnet, addresses)


@contextmanager
def ussd_proxy(gateway: str, answers: dict[tuple[str, int], str]) -> Iterator[str]:
    """A real HTTP server in front of ``gateway``: a request of phone P with N inputs is
    answered ``answers[(P, N)]`` when present, else passed on to the gateway."""

    def answer(method: str, path: str, body: bytes) -> tuple[int, bytes]:
        if method == "GET":
            return requests.get(gateway + path, timeout=30).status_code, b"{}"
        form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        depth = len(form["text"].split("*")) if form["text"] else 0
        mine = answers.get((form["phoneNumber"], depth))
        if mine is not None:
            return 200, mine.encode()
        reply = requests.post(gateway, data=form, timeout=30)
        return reply.status_code, reply.content

    with fake_server(answer) as url:
        yield url


def test_a_ussd_gateway_answering_unexpected_menus(cli: InCli, module_devnet: Devnet,
                                                   tmp_path: Path) -> None:
    from tests.ussd.world import Stack

    data = make_data(tmp_path, 11_200, count=6)
    users = list(data.users())
    first, midway = users[1], users[4]
    casino = "CON Welcome to Casino Royale\n1. Place a bet"
    colour = "CON Enter your favourite colour"
    with Stack.running(module_devnet, tmp_path / "ussd") as stack, \
            ussd_proxy(stack.gateway.url, {(first.phone, 0): casino,
                                           (midway.phone, 3): colour}) as proxy:
        env = {"CIC_CUSTODIAL_BROKER_URL": stack.harness.broker_url,
               "CIC_CUSTODIAL_QUEUE": stack.harness.setup.queue, "CIC_META_URL": stack.meta.url,
               "CIC_META_TOKEN": stack.meta.token, "CIC_USSD_URL": proxy,
               "CIC_USSD_SERVICE_CODE": stack.gateway.service_code}
        run = cli("import", "cic_ussd", "--dir", str(data.root), "--devnet",
                  str(module_devnet.directory), env=env)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run
    gender = registration_screens(preferred_language(data.manifest().seed, midway.index))[2]
    assert failures(run.stdout) == {
        first.address.lower(): (
            f"the USSD gateway {proxy} opened the session of {first.phone} with an unexpected "
            f"screen {casino!r}; expected the language menu (a new user) or the PIN prompt, "
            "main menu or 'still being created' (a registered one): is CIC_USSD_URL a CIC USSD "
            "gateway?"),
        midway.address.lower(): (
            f"the registration session of {midway.phone} went off the expected path after 3 "
            f"of 7 inputs: the gateway showed {colour!r}, expected "
            f"{str(next(iter(gender)))[:80]!r}"),
    }, run.stdout
    with open_state_store(devnet_settings(module_devnet, data.root)) as store:
        targets = store.targets("cic_ussd")
    others = {u.address.lower() for u in users} - {first.address.lower(), midway.address.lower()}
    assert set(targets.values()) == others
    assert registered(module_devnet, list(targets)) == set(targets)
