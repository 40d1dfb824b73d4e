"""Fixtures: one anvil per session with the published CIC contracts deployed (tests/genuine/
network.py fetches them from the package index into a cache the first time), and ``cli``.

The anvil automines: at the size tested (100 users, one transaction each to register, three to
pay) it lost no transaction; the interval-mining alternative is ``evm_setIntervalMining`` 1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pytest

from cic_devnet import anvil
from cic_seeding.chain.client import ChainClient
from cic_seeding.chain.keyfile import encrypt_v3
from cic_seeding.chain.rpc import JsonRpc
from cic_seeding.chain.signer import Signer
from tests.generate._incli import cli  # noqa: F401  (fixture)
from tests.genuine.network import GenuineNetwork, cache_dir, deploy_genuine, fetch

#: Read before any test runs (the tests' own fixture hides every CIC_* variable).
CACHE = cache_dir()
CHAIN_ID = 8996  # the generator's default chain spec: the data needs no -i
PASSWORD = "genuine"


class GenuineChain(NamedTuple):
    """What a user of a CIC network has: ``-p``, ``-r``, ``-y`` and the keyfile's password."""

    rpc_url: str
    registry: str
    keyfile: Path
    password: str


@dataclass(frozen=True)
class GenuineNode:
    chain: GenuineChain
    deployment: GenuineNetwork
    node: anvil.AnvilProcess
    first_block: int  # the head after deployment


@pytest.fixture(scope="session")
def genuine_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GenuineNode]:
    """anvil with the published contracts, deployed by dev account 0 (whose v3 keyfile is
    written for the tests); stopped by pid after the session."""
    abis = fetch(CACHE)
    root = tmp_path_factory.mktemp("genuine")
    node = anvil.start_anvil(chain_id=CHAIN_ID, log_file=root / "anvil.log")
    try:
        anvil.rpc(node.url, "evm_setAutomine", [True])
        key = anvil.dev_key(0)
        client = ChainClient(JsonRpc(node.url), signer=Signer.from_key(key),
                             explicit_mining=False)
        deployment = deploy_genuine(client, abis=abis)
        keyfile = root / "deployer.json"
        keyfile.write_text(json.dumps(encrypt_v3(bytes.fromhex(key.removeprefix("0x")),
                                                 PASSWORD, n=2**8)))
        yield GenuineNode(GenuineChain(node.url, deployment.registry, keyfile, PASSWORD),
                          deployment, node, client.head())
    finally:
        node.stop()


@pytest.fixture(scope="session")
def genuine(genuine_node: GenuineNode) -> GenuineChain:
    """``(rpc_url, registry, keyfile, password)`` of a complete genuine CIC network."""
    return genuine_node.chain
