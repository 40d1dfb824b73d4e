"""The toolkit against the published CIC contracts (tests/genuine/network.py): doctor, then
``import eth``, ``sync eth``, ``verify`` and ``traffic`` over 100 users with ``-p -r -y``, as on
a real CIC network; every user registered once and paid once, read from the chain's logs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from eth_utils import to_checksum_address

from cic_seeding.chain.abi import artifact
from cic_seeding.chain.client import ChainClient
from cic_seeding.chain.registry import ADDRESS_ADDED, IDENTIFIERS, CicNetwork
from cic_seeding.chain.rpc import JsonRpc
from cic_seeding.datadir import DataDir
from cic_seeding.generate.generator import GenerateOptions, generate
from cic_seeding.units import dataset_to_token
from tests.generate._incli import InCli
from tests.genuine.conftest import CACHE, GenuineChain, GenuineNode
from tests.genuine.network import CALLS, fetch

USERS = 100
GAS_GIFT = 10**16  # the setting's default
#: topic 0 of ERC20 ``Transfer(address,address,uint256)``
TRANSFER = artifact("GiftableToken").topic("Transfer")

#: What cic-seeding calls on each contract (our artifacts' selectors): the published ABI must
#: have each with the same selector and result types.
WE_CALL = {
    "Registry": ("addressOf", "identifier", "identifierCount"),
    "AccountsIndex": ("add", "have", "isWriter", "addWriter", "entryCount", "entry"),
    "TokenUniqueSymbolIndex": ("addressOf", "entryCount", "entry"),
    "GiftableToken": ("symbol", "decimals", "name", "balanceOf", "transfer", "transferFrom",
                      "approve", "allowance", "mintTo", "totalSupply"),
    "ERC20Faucet": ("token", "tokenAmount", "nextTime", "giveTo", "isWriter", "owner"),
}


def args(chain: GenuineChain) -> tuple[list[str], dict[str, str]]:
    return (["-p", chain.rpc_url, "-r", chain.registry, "-y", str(chain.keyfile)],
            {"CIC_KEYFILE_PASSWORD": chain.password})


def test_the_published_abis_have_what_we_call() -> None:
    genuine = fetch(CACHE)
    for name, functions in WE_CALL.items():
        ours = artifact(name)
        for fn in functions:
            theirs = genuine[name].fn(fn)
            assert (theirs.selector, theirs.outputs) == (ours.fn(fn).selector,
                                                         ours.fn(fn).outputs), (name, fn)
    for name, functions in CALLS.items():  # what the deployment calls
        for fn in functions:
            assert fn in genuine[name].functions, (name, fn)
    assert genuine["AccountsIndex"].topic("AddressAdded") == ADDRESS_ADDED
    assert genuine["GiftableToken"].topic("Transfer") == TRANSFER


def test_the_network_is_complete(genuine_node: GenuineNode) -> None:
    net = CicNetwork(ChainClient(JsonRpc(genuine_node.chain.rpc_url)),
                     genuine_node.chain.registry)
    contracts = genuine_node.deployment.contracts
    assert {n: a for n, a in net.holdings().items() if int(a, 16)} == {
        "ContractRegistry": contracts["Registry"], "AccountRegistry": contracts["AccountsIndex"],
        "TokenRegistry": contracts["TokenUniqueSymbolIndex"], "Faucet": contracts["ERC20Faucet"],
        "DefaultToken": contracts["GiftableToken"]}
    assert list(net.holdings()) == list(IDENTIFIERS)
    assert net.token("GFT").address == net.token().address == contracts["GiftableToken"]
    assert net.faucet_payout(net.token()) == genuine_node.deployment.faucet_amount


def test_doctor_is_all_ok(cli: InCli, genuine: GenuineChain) -> None:
    given, env = args(genuine)
    run = cli("doctor", *given, env=env)
    assert run.returncode == 0, run
    assert "FAIL" not in run.stdout
    # the published faucet: the deployer is its owner, not in its isWriter mapping
    assert "the signer is its owner" in run.stdout, run.stdout


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("genuine-data") / "data"
    generate(GenerateOptions(directory=directory, count=USERS, seed=4242, transactions=20,
                             workers=1))
    return directory


def test_import_sync_verify_traffic(cli: InCli, genuine_node: GenuineNode, data: Path) -> None:
    chain = genuine_node.chain
    given, env = args(chain)
    run = cli("import", "eth", "--dir", str(data), *given, env=env)
    assert run.returncode == 0, run
    run = cli("sync", "eth", "--dir", str(data), *given, "--timeout", "120", env=env)
    assert run.returncode == 0, run
    run = cli("verify", str(data), *given[:4], "--skip-metadata", "--skip-ussd",
              "--skip-custodial")
    assert run.returncode == 0, run
    assert f"{USERS} users of token GFT" in run.stdout and "all ok" in run.stdout, run.stdout
    assert_registered_and_paid_once(genuine_node, DataDir(data))
    run = cli("traffic", str(data), *given, "--timeout", "120", env=env)
    assert run.returncode == 0, run
    assert "20/20 transfers done" in run.stdout, run.stdout
    # a rerun of everything does nothing twice
    for command in (["import", "eth", "--dir", str(data), *given],
                    ["sync", "eth", "--dir", str(data), *given, "--timeout", "60"]):
        assert cli(*command, env=env).returncode == 0
    assert_registered_and_paid_once(genuine_node, DataDir(data), traffic=20)


def assert_registered_and_paid_once(genuine_node: GenuineNode, data: DataDir,
                                    traffic: int = 0) -> None:
    """From the logs: each user added to the AccountsIndex once; one token transfer from the
    signer (its opening balance) and one from the faucet (the payout), and nothing else but
    ``traffic`` replayed transfers; its native balance the gas gift (or less, after traffic)."""
    deployment = genuine_node.deployment
    client = ChainClient(JsonRpc(genuine_node.chain.rpc_url))
    first, last = genuine_node.first_block, client.head()
    users = {to_checksum_address(u.address) for u in data.users()}
    added = Counter(to_checksum_address("0x" + str(e["data"])[-40:]) for e in client.logs(
        deployment.contracts["AccountsIndex"], ADDRESS_ADDED, first, last))
    assert {u: added[u] for u in users} == dict.fromkeys(users, 1)
    assert sum(added.values()) == USERS  # and nobody else

    manifest = data.manifest()
    opening = {to_checksum_address("0x" + a): dataset_to_token(v, manifest.decimals,
                                                               deployment.decimals)
               for a, v in data.balances().items()}
    faucet, signer = deployment.contracts["ERC20Faucet"], deployment.deployer
    received: dict[str, list[tuple[str, int]]] = {u: [] for u in users}
    between = 0
    for entry in client.logs(deployment.contracts["GiftableToken"], TRANSFER, first, last):
        sender = to_checksum_address("0x" + entry["topics"][1][-40:])
        recipient = to_checksum_address("0x" + entry["topics"][2][-40:])
        if sender in users:
            between += 1
            assert recipient in users
            continue
        assert recipient in users, entry
        received[recipient].append((sender, int(entry["data"], 16)))
    for user in users:
        assert sorted(received[user]) == sorted([(signer, opening[user]),
                                                 (faucet, deployment.faucet_amount)]), user
    assert between == traffic
    native = dict(zip(sorted(users), client.native_balances(sorted(users)), strict=True))
    if traffic:
        assert all(0 < wei <= GAS_GIFT for wei in native.values())
    else:
        assert set(native.values()) == {GAS_GIFT}
