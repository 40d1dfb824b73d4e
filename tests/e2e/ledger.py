"""Exact end-state assertions for a seeded data directory (on chain and on disk)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cic_devnet.devnet import Devnet
from cic_seeding.chain.abi import artifact
from cic_seeding.chain.connect import connect
from cic_seeding.chain.registry import ACCOUNTS_INDEX, FAUCET, TOKEN, CicNetwork
from cic_seeding.chain.tx import Call
from cic_seeding.config import Settings
from cic_seeding.datadir import DataDir
from cic_seeding.generate.generator import GenerateOptions, generate
from tests.conftest import devnet_settings
from tests.e2e.chain_check import read_ledger
from tests.e2e.procs import files_in


def make_data(devnet: Devnet, root: Path, count: int, seed: int, **flags: object) -> Settings:
    data = root / "data"
    generate(GenerateOptions(directory=data, count=count, seed=seed, workers=2))
    return devnet_settings(devnet, data, **flags)


@dataclass(frozen=True)
class Holdings:
    """Token balances of the signer and the faucet, to prove what left them."""

    signer: int
    faucet: int

    @classmethod
    def read(cls, network: CicNetwork) -> Holdings:
        client = network.client
        token = network.token()
        assert client.signer is not None
        signer, faucet = client.call_many([
            (token.address, TOKEN.fn("balanceOf"), (client.signer.address,)),
            (token.address, TOKEN.fn("balanceOf"), (network.faucet,))])
        return cls(signer, faucet)


def assert_paid_exactly_once(settings: Settings, before: Holdings | None = None) -> None:
    """Every user registered once, holding opening + faucet tokens and exactly the gas gift;
    with ``before``, the signer and faucet lost exactly what the users gained."""
    ledger = read_ledger(settings)
    users = len(ledger.users)
    assert ledger.index_entries == users, f"{ledger.index_entries} index entries for {users} users"
    assert all(ledger.registered.values())
    assert ledger.wrong_balances() == {}, "balance != opening + faucet (have, want)"
    assert all(ledger.faucet_used.values())
    assert {u: n for u, n in ledger.native.items() if n != settings.gas_gift} == {}, \
        "native balance != one gas gift"
    if before is not None:
        network = connect(settings)
        after = Holdings.read(network)
        amount = network.client.call(network.faucet, FAUCET.fn("tokenAmount"))
        opening = sum(DataDir(Path(settings.data_dir)).balances().values())
        assert before.signer - after.signer == opening
        assert before.faucet - after.faucet == users * amount
    data = Path(settings.data_dir)
    assert files_in(data / "new") == users, "new/ records missing"
    assert files_in(data / "keystore") == users


def planned_payments(data: Path, users: int) -> int:
    """Payments of the first ``users`` users: faucet, gas, and fund where the balance > 0."""
    balances = DataDir(data).balances()
    rows = list(DataDir(data).users())[:users]
    return 2 * users + sum(1 for r in rows if balances[r.address.lower()[2:]] > 0)


def deploy_accounts_index(network: CicNetwork) -> str:
    """A fresh AccountsIndex (the signer is its writer), not in any registry."""
    receipt = network.client.transact(Call(None, artifact("AccountsIndex").deploy_data(),
                                           gas=3_000_000), "deploying a second AccountsIndex")
    assert receipt.contract_address
    return receipt.contract_address


def index_add(network: CicNetwork, index: str, address: str) -> None:
    network.client.transact(Call(index, ACCOUNTS_INDEX.encode("add", address), gas=120_000),
                            f"add({address}) on {index}")


def lost_and_doubled(settings: Settings) -> tuple[int, int]:
    """(users lost, double payments) read from the chain, for the fault report: a user is lost
    when it is not registered, lacks tokens, gas or its faucet payout; a double payment is an
    extra AccountsIndex entry or a user holding more tokens or gas than paid once."""
    ledger = read_ledger(settings)
    lost = sum(1 for u in ledger.users
               if not ledger.registered[u] or not ledger.faucet_used[u]
               or ledger.balances[u] < ledger.expected[u] or ledger.native[u] < settings.gas_gift)
    doubled = max(0, ledger.index_entries - len(ledger.users)) + sum(
        1 for u in ledger.users
        if ledger.balances[u] > ledger.expected[u] or ledger.native[u] > settings.gas_gift)
    return lost, doubled
