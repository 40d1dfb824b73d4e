"""The gate after `cic-seed traffic`: the balance check expects opening balance + faucet payout
+ the net of every confirmed replayed transfer, exactly, on a real devnet."""

from __future__ import annotations

import json
from pathlib import Path

from cic_devnet.devnet import Devnet
from cic_seeding.chain.client import ChainClient
from cic_seeding.chain.connect import connect
from cic_seeding.chain.registry import TOKEN
from cic_seeding.chain.rpc import JsonRpc
from cic_seeding.chain.signer import Signer
from cic_seeding.chain.tx import Call
from cic_seeding.config import Settings
from cic_seeding.datadir import DataDir
from cic_seeding.generate.generator import GenerateOptions, generate
from cic_seeding.generate.keys import derive_private_key
from cic_seeding.importers.eth import EthImporter
from cic_seeding.state import Status, open_state_store
from cic_seeding.sync.run import run_sync
from cic_seeding.sync.syncer import SyncOptions
from cic_seeding.traffic import LEDGER
from cic_seeding.units import dataset_to_token_exact
from cic_seeding.verify import VerifyOptions, run_verify
from cic_seeding.verify.checks.balance import DIFFERS, UNSETTLED
from tests.conftest import devnet_settings
from tests.e2e.chain_check import read_ledger
from tests.helpers import run_cli

USERS, TRANSFERS = 25, 60
CHAIN = ("accounts_index", "balance", "faucet", "gas")


def seeded_with_traffic(devnet: Devnet, tmp_path: Path, seed: int) -> Settings:
    data = tmp_path / "data"
    generate(GenerateOptions(directory=data, count=USERS, seed=seed, transactions=TRANSFERS,
                             workers=1))
    settings = devnet_settings(devnet, data)
    importer = EthImporter(settings)
    try:
        assert importer.run().ok
    finally:
        importer.close()
    assert run_sync(settings, "eth", SyncOptions(timeout=60, poll=0.05)).ok
    run = run_cli("traffic", str(data), "--devnet", str(devnet.directory))
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{TRANSFERS}/{TRANSFERS} transfers done" in run.stdout
    return settings


def verify_cli(settings: Settings, devnet: Devnet, *args: str) -> tuple[int, str]:
    run = run_cli("verify", settings.data_dir, "--devnet", str(devnet.directory), *args)
    assert "Traceback" not in run.stderr, run.stderr
    return run.returncode, run.stdout


def test_verify_passes_after_traffic_and_catches_one_unit_moved(module_devnet: Devnet,
                                                               tmp_path: Path) -> None:
    settings = seeded_with_traffic(module_devnet, tmp_path, seed=7272)
    ledger = read_ledger(settings)
    moved = [u for u in ledger.users if ledger.balances[u] != ledger.expected[u]]
    assert len(moved) > USERS // 2  # the traffic changed most balances: nothing to hide behind

    code, out = verify_cli(settings, module_devnet)
    assert code == 0, out
    assert f"balance: {USERS}/{USERS}" in out.splitlines()

    # one unit leaves one user, signed with its own key, to an address outside the dataset
    users = list(DataDir(settings.data_dir).users())
    victim = next(u for u in users if u.address in moved and ledger.balances[u.address] > 0)
    network = connect(settings)
    sink = network.client.signer.address  # type: ignore[union-attr]
    token = network.token().address
    client = ChainClient(JsonRpc(module_devnet.rpc_url), explicit_mining=True,
                         signer=Signer.from_key(derive_private_key(7272, victim.index)))
    client.transact(Call(token, TOKEN.encode("transfer", sink, 1)), "move one unit away")

    code, out = verify_cli(settings, module_devnet, "--format", "json")
    assert code == 1
    doc = json.loads(out)
    assert {c: [f["address"] for f in doc["checks"][c]["failures"]] for c in CHAIN} == {
        "accounts_index": [], "balance": [victim.address.lower()], "faucet": [], "gas": []}
    (failure,) = doc["checks"]["balance"]["failures"]
    found = ledger.balances[victim.address] - 1
    assert failure["reason"] == DIFFERS
    assert failure["detail"].endswith(f", found {found}")
    data = DataDir(settings.data_dir)
    opening = dataset_to_token_exact(data.balances()[victim.address.lower()[2:]],
                                     data.manifest().decimals, network.token().decimals)
    faucet = doc["faucet_amount"]
    traffic = found + 1 - faucet - opening
    sign = "-" if traffic < 0 else "+"
    assert failure["detail"] == (f"expected {found + 1} (opening {opening} + faucet {faucet} "
                                 f"{sign} traffic {abs(traffic)}), found {found}")
    code, text = verify_cli(settings, module_devnet)
    assert code == 1
    assert (f"  balance: 1 user -- {DIFFERS} ({victim.address.lower()}: {failure['detail']})"
            in text.splitlines())


def test_transfers_not_settled_in_the_ledger_are_named(module_devnet: Devnet,
                                                       tmp_path: Path) -> None:
    """A transfer on chain whose ledger row is back to submitted (a reorg reopened it): the
    users it touched fail with a reason that says the ledger is not settled, not just wrong."""
    settings = seeded_with_traffic(module_devnet, tmp_path, seed=7373)
    assert run_verify(settings, VerifyOptions(include=CHAIN)).ok
    with open_state_store(settings) as store:
        last = max(store.payments(LEDGER, [Status.CONFIRMED]), key=lambda p: p.seq)
        assert last.block_number is not None
        reopened = store.reopen_payments(LEDGER, last.block_number)
        rows = [p for p in store.payments(LEDGER, [Status.SUBMITTED])]
    assert reopened == len(rows) >= 1
    result = run_verify(settings, VerifyOptions(include=("balance",)))
    failures = result.checks["balance"].failures
    assert failures and {f.reason for f in failures} == {UNSETTLED}
    assert all(f.detail.endswith(" unsettled") for f in failures)
    senders = {p.address for p in rows}
    assert senders <= {f.address for f in failures}
    again = run_cli("traffic", settings.data_dir, "--devnet", str(module_devnet.directory))
    assert again.returncode == 0, again.stdout + again.stderr
    assert run_verify(settings, VerifyOptions(include=CHAIN)).ok
