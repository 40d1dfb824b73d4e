"""The gate on a devnet with its metadata server, tried as a user would (the CLI): seeded and
replayed traffic verifies; damage (a deleted keyfile, an overwritten person document) fails it
and ``cic-seed repair`` brings it back, never paying or registering twice; a malformed
balances.csv row costs that user only; an import rerun after the chain was rolled back imports
its users again; ``--dry-run`` sends nothing; ``--strict`` fails once the metadata server is
gone. The last test stops the module's metadata server."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cic_devnet.devnet import Devnet, devnet_up
from cic_seeding.chain.connect import connect
from cic_seeding.chain.keyfile import decrypt_v3
from cic_seeding.chain.registry import ADDRESS_ADDED
from cic_seeding.config import Settings
from cic_seeding.datadir import DataDir, keyfile_path
from cic_seeding.generate.generator import GenerateOptions, generate
from cic_seeding.generate.keys import address_of
from cic_seeding.importers.meta import meta_client
from cic_seeding.meta.documents import DocumentSource
from tests.conftest import devnet_settings
from tests.e2e.chain_check import read_ledger
from tests.helpers import run_cli

USERS, TRANSFERS = 20, 30
META = ("metadata", "metadata_custom", "metadata_phone", "metadata_preferences")


@pytest.fixture(scope="module")
def meta_devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    devnet = devnet_up(tmp_path_factory.mktemp("gate") / "devnet", meta=True)
    try:
        yield devnet
    finally:
        devnet.stop()


def cli(devnet: Devnet, command: str, *args: str) -> tuple[int, str, str]:
    run = run_cli(command, *args, "--devnet", str(devnet.directory))
    assert "Traceback" not in run.stderr, run.stderr
    return run.returncode, run.stdout, run.stderr


def seed(devnet: Devnet, data: Path, count: int, seed: int, transactions: int = 0) -> Settings:
    generate(GenerateOptions(directory=data, count=count, seed=seed, transactions=transactions,
                             workers=1))
    return devnet_settings(devnet, data)


def registrations(settings: Settings) -> dict[str, int]:
    """AddressAdded logs of the AccountsIndex per address, from the chain's own logs."""
    network = connect(settings, signer=False)
    logs = network.client.logs(network.accounts_index, ADDRESS_ADDED, 0,
                               network.client.head())
    out: dict[str, int] = {}
    for entry in logs:
        address = "0x" + str(entry["data"])[-40:].lower()
        out[address] = out.get(address, 0) + 1
    return out


@pytest.fixture(scope="module")
def seeded(meta_devnet: Devnet, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    data = tmp_path_factory.mktemp("seeded") / "data"
    settings = seed(meta_devnet, data, USERS, 1818, TRANSFERS)
    for command, args in (("import", ("eth",)), ("import", ("cic_meta",)), ("sync", ("eth",)),
                          ("traffic", ())):
        code, out, err = cli(meta_devnet, command, *args, str(data))
        assert code == 0, (command, out, err)
    return settings


def test_seed_traffic_then_verify_strict_passes_with_the_metadata_checks(
        meta_devnet: Devnet, seeded: Settings) -> None:
    code, out, _ = cli(meta_devnet, "verify", seeded.data_dir, "--strict")
    assert code == 0, out
    lines = out.splitlines()
    for check in ("balance", "local_key", "accounts_index", *META):
        assert f"{check}: {USERS}/{USERS}" in lines, out


def test_repair_rewrites_a_deleted_keyfile_and_puts_an_overwritten_document_again(
        meta_devnet: Devnet, seeded: Settings) -> None:
    data = DataDir(seeded.data_dir)
    users = list(data.users())
    lost, tampered = users[3], users[5]
    keyfile = keyfile_path(data.keystore, lost.address)
    keyfile.unlink()
    (pointer, doc), = [(p, d) for kind, p, d in
                       DocumentSource(data).documents([tampered])[0][tampered.address].items()
                       if kind == "person"]
    with meta_client(seeded) as client:
        client.put(pointer, {**doc, "gender": "tampered"})
    registered_before = registrations(seeded)
    ledger_before = read_ledger(seeded)

    code, out, _ = cli(meta_devnet, "verify", seeded.data_dir, "--format", "json")
    assert code == 1
    failing = {cid: [f["address"] for f in c["failures"]]
               for cid, c in json.loads(out)["checks"].items() if c["failed"]}
    assert failing == {"local_key": [lost.address.lower()],
                       "metadata": [tampered.address.lower()]}

    code, out, _ = cli(meta_devnet, "repair", seeded.data_dir, "--dry-run")
    assert code == 0, out
    assert "import eth: import for 1 user" in out and "import cic_meta: import for 1 user" in out
    assert "dry run: nothing done" in out
    assert not keyfile.exists()  # a dry run changes nothing

    code, out, err = cli(meta_devnet, "repair", seeded.data_dir)
    assert code == 0, out + err
    assert "after repair: verify passes" in out
    assert keyfile.stat().st_mode & 0o777 == 0o600
    key = decrypt_v3(json.loads(keyfile.read_text()), seeded.keystore_password)
    assert address_of(key).lower() == lost.address.lower()
    # found on the chain, not registered twice; nobody paid again
    assert registrations(seeded) == registered_before
    assert read_ledger(seeded).balances == ledger_before.balances

    code, out, _ = cli(meta_devnet, "verify", seeded.data_dir, "--strict")
    assert code == 0, out
    code, out, _ = cli(meta_devnet, "repair", seeded.data_dir)  # nothing left to do
    assert code == 0 and "nothing to repair" in out, out


def test_repair_names_a_balance_moved_after_seeding_as_not_repairable_and_pays_nothing(
        meta_devnet: Devnet, tmp_path: Path) -> None:
    from cic_seeding.chain.client import ChainClient
    from cic_seeding.chain.registry import TOKEN
    from cic_seeding.chain.signer import Signer
    from cic_seeding.chain.tx import Call
    from cic_seeding.generate.keys import derive_private_key

    settings = seed(meta_devnet, tmp_path / "data", 3, 1717)
    for command in ("import", "sync"):
        code, out, err = cli(meta_devnet, command, "eth", settings.data_dir)
        assert code == 0, (command, out, err)
    data = DataDir(settings.data_dir)
    victim = list(data.users())[1]
    network = connect(settings)  # the devnet's deployer: where the victim's tokens go
    token = network.token(settings.token_symbol)
    held = network.client.call(token.address, TOKEN.fn("balanceOf"), victim.address)
    own = ChainClient(network.client.rpc, signer=Signer.from_key(
        "0x" + derive_private_key(data.manifest().seed, victim.index).hex()),
                      explicit_mining=True)
    own.transact(Call(token.address, TOKEN.encode("transfer", network.client.signer.address,
                                                   held), gas=90_000), "drain")
    ledger_before = read_ledger(settings)

    code, out, err = cli(meta_devnet, "repair", settings.data_dir)
    assert code == 1, out + err
    assert "sync sync" not in out
    assert "  sync eth: done: 3/3 users paid, 0 failed" in out, out
    assert ("  not repairable: balance: the token balance differs from the expected amount (1):"
            " every payment the sync makes is on the chain, so what differs changed after "
            "seeding (a transfer away?)") in out.splitlines(), out
    assert read_ledger(settings).balances == ledger_before.balances  # nothing paid again


def test_a_malformed_balance_costs_that_user_only(meta_devnet: Devnet, tmp_path: Path) -> None:
    settings = seed(meta_devnet, tmp_path / "data", 10, 1919)
    data = DataDir(settings.data_dir)
    bad = list(data.users())[4]
    lines = data.balances_csv.read_text().splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith(bad.address[2:].lower())
               or line.lower().startswith(bad.address.lower()))
    lines[row] = lines[row].rsplit(",", 1)[0] + ",12x"
    data.balances_csv.write_text("\n".join(lines) + "\n")

    code, out, _ = cli(meta_devnet, "import", "eth", settings.data_dir)
    assert code == 1 and bad.address.lower() in out.lower(), out
    code, out, _ = cli(meta_devnet, "import", "cic_meta", settings.data_dir)
    assert code == 1 and bad.address.lower() in out.lower(), out
    code, out, _ = cli(meta_devnet, "sync", "eth", settings.data_dir, "--timeout", "120")
    assert code == 1, out
    ledger = read_ledger(settings)
    others = [u for u in ledger.users if u != bad.address]
    assert all(ledger.registered[u] for u in others)
    assert {u: ledger.balances[u] for u in others} == {u: ledger.expected[u] for u in others}

    code, out, _ = cli(meta_devnet, "verify", settings.data_dir, "--format", "json")
    assert code == 1
    checks = json.loads(out)["checks"]
    failing = {f["address"] for c in checks.values() for f in c["failures"]}
    assert failing == {bad.address.lower()}, {cid: c["failure_groups"] for cid, c in checks.items()}
    assert checks["balance"]["ok"] == 9


def test_dry_runs_send_nothing_and_an_import_after_a_rollback_imports_again(
        meta_devnet: Devnet, tmp_path: Path) -> None:
    settings = seed(meta_devnet, tmp_path / "data", 8, 2020)
    network = connect(settings)
    rpc, me = network.client.rpc, network.client.signer.address  # type: ignore[union-attr]
    nonce = rpc.call("eth_getTransactionCount", [me, "latest"])

    code, out, _ = cli(meta_devnet, "import", "eth", settings.data_dir, "--dry-run")
    assert code == 0, out
    assert "would import 8 users of 8" in out and "8 registration transactions" in out, out
    code, out, _ = cli(meta_devnet, "sync", "eth", settings.data_dir, "--dry-run")
    assert code == 0, out
    assert "would pay at most 8 users" in out and "8 of them are not imported yet" in out, out
    assert rpc.call("eth_getTransactionCount", [me, "latest"]) == nonce
    assert not any(registrations(settings).get(u.address.lower())
                   for u in DataDir(settings.data_dir).users())

    snapshot = rpc.call("evm_snapshot", [])
    for args in (("import", "eth"), ("sync", "eth", "--timeout", "120")):
        code, out, err = cli(meta_devnet, *args[:1], *args[1:], settings.data_dir)
        assert code == 0, out + err
    assert rpc.call("evm_revert", [snapshot]) is True  # the chain goes back to before
    assert not any(read_ledger(settings).registered.values())

    code, out, err = cli(meta_devnet, "import", "eth", settings.data_dir)
    assert code == 0, out + err
    assert "8 users confirmed before were not on the chain" in out, out
    code, out, err = cli(meta_devnet, "sync", "eth", settings.data_dir, "--timeout", "120")
    assert code == 0, out + err
    ledger = read_ledger(settings)
    assert all(ledger.registered.values()) and ledger.wrong_balances() == {}
    assert set(registrations(settings).values()) == {1}
    code, out, _ = cli(meta_devnet, "verify", settings.data_dir, "--skip-metadata")
    assert code == 0, out


def test_strict_fails_once_the_metadata_server_is_gone(meta_devnet: Devnet,
                                                        seeded: Settings) -> None:
    meta_pid = int(meta_devnet.info["meta"]["pid"])
    os.kill(meta_pid, 9)
    code, out, _ = cli(meta_devnet, "verify", seeded.data_dir)
    assert code == 0, out
    skipped = [line for line in out.splitlines() if line.startswith("skipped: ")]
    assert len(skipped) == 1 and "metadata" in skipped[0], out
    code, out, _ = cli(meta_devnet, "verify", seeded.data_dir, "--strict")
    assert code == 1, out
    assert all(check in out.splitlines()[-1] for check in META), out
