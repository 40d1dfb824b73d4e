"""The sovereign pipeline on a real devnet: generate, import (eth), sync, exact balances."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import eth_keyfile
from eth_utils import keccak

from cic_devnet.devnet import Devnet
from cic_seeding.datadir import DataDir
from cic_seeding.generate.generator import GenerateOptions, generate
from cic_seeding.importers.eth import EthImporter
from cic_seeding.records.chainspec import ChainSpec
from cic_seeding.records.person import identity_addresses
from cic_seeding.sync.run import run_sync
from cic_seeding.sync.syncer import SyncOptions
from tests.conftest import devnet_settings
from tests.e2e.chain_check import read_ledger


def seed_users(devnet: Devnet, tmp_path: Path, count: int, seed: int, **flags: object):
    data = tmp_path / "data"
    generate(GenerateOptions(directory=data, count=count, seed=seed, workers=2))
    return devnet_settings(devnet, data, **flags)


def test_300_users_imported_and_synced_exactly(module_devnet: Devnet, tmp_path: Path) -> None:
    settings = seed_users(module_devnet, tmp_path, 300, seed=300)
    importer = EthImporter(settings)
    try:
        result = importer.run()
    finally:
        importer.close()
    assert result.ok and result.confirmed == 300, result.render_text()

    sync = run_sync(settings, "eth", SyncOptions(timeout=120, poll=0.1))
    assert sync.ok and sync.done == 300, sync.render_text()

    ledger = read_ledger(settings)
    assert all(ledger.registered.values())
    assert ledger.wrong_balances() == {}
    assert all(ledger.faucet_used.values())
    assert set(ledger.native.values()) == {settings.gas_gift}

    data = DataDir(settings.data_dir)
    chain = ChainSpec.parse(settings.chain_spec)
    assert sum(1 for _ in data.new.keys()) == 300  # noqa: SIM118 (a keyed store, not a dict)
    # every transaction signed for a user -- registration, opening balance, faucet, gas --
    # saved raw under tx/, named by its hash, before it was broadcast
    hashes = list(data.tx.keys())  # noqa: SIM118
    assert len(hashes) == 300 * 4
    for name in hashes[::97]:
        raw = bytes.fromhex(data.tx.get(name).decode().removeprefix("0x"))
        assert keccak(raw).hex().upper().removeprefix("0X") == name.removeprefix("0X")
    keyfiles = sorted(data.keystore.iterdir())
    assert len(keyfiles) == 300
    assert {stat.S_IMODE(p.stat().st_mode) for p in keyfiles} == {0o600}
    for user in list(data.users())[:3]:  # scrypt: a sample decrypts to its address
        record = json.loads(data.new.get(user.address))
        assert user.address in identity_addresses(record, chain)
        doc = json.loads((data.keystore / f"{user.address.lower()[2:]}.json").read_text())
        key = eth_keyfile.decode_keyfile_json(doc, settings.keystore_password.encode())
        from eth_account import Account

        assert Account.from_key(key).address == user.address

    # a rerun of both sends nothing and pays nothing
    again = EthImporter(settings)
    try:
        rerun = again.run()
    finally:
        again.close()
    assert rerun.submitted == 0 and rerun.done_before == 300
    assert run_sync(settings, "eth", SyncOptions(timeout=60, poll=0.1)).ok
    assert read_ledger(settings).wrong_balances() == {}


def test_kdf_flag_writes_production_keyfiles(module_devnet: Devnet, tmp_path: Path) -> None:
    from tests.helpers import run_script

    settings = seed_users(module_devnet, tmp_path, 2, seed=4242)
    result = run_script("eth/seed.py", "--dir", str(settings.data_dir), "--devnet",
                        str(module_devnet.directory), "--kdf", "production")
    assert result.returncode == 0, result.stderr
    keyfiles = list(DataDir(settings.data_dir).keystore.iterdir())
    assert len(keyfiles) == 2
    assert {json.loads(p.read_text())["crypto"]["kdfparams"]["n"] for p in keyfiles} == {2**18}


def test_registered_users_are_found_alike_by_the_override_and_per_address(
        module_devnet: Devnet, tmp_path: Path) -> None:
    """``done_on_chain`` (what a rerun skips) reads AccountsIndex.have by BatchReader's state
    override, and per address on a node without overrides: the same users either way."""
    settings = seed_users(module_devnet, tmp_path, 12, seed=912)
    importer = EthImporter(settings)
    try:
        assert importer.run(limit=5).confirmed == 5
        rows = list(DataDir(settings.data_dir).users())
        by_override = importer.done_on_chain(rows)
        assert importer._batch_reader is not None and importer._batch_reader.works
        importer._batch_reader.works = False  # as on a node that ignores overrides
        per_address = importer.done_on_chain(rows)
    finally:
        importer.close()
    imported = {r.address for r in rows[:5]}
    assert set(by_override) == set(per_address) == imported
