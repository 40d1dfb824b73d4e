"""Seed, sync and verify on every kind of node, as a user with nothing but ``-p -r -y`` would.

Each case starts its own node (tests/nodes/nodes.py), deploys the CIC contracts through the
CLI, generates a dataset for that node's chain and runs ``import eth``, ``sync eth`` and
``verify`` as subprocesses. Then it reads the chain's own logs: every user registered by
exactly one ``AddressAdded``, paid by exactly one opening-balance ``Transfer`` from the signer
and one faucet ``Transfer``, and holding exactly one gas gift.

CI runs a sample (``CIC_NODE_MATRIX_USERS``, default 500 users per node); the full run is::

    CIC_NODE_MATRIX_USERS=3000 python -m pytest -q tests/nodes/test_node_matrix.py
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from cic_seeding.chain.registry import ADDRESS_ADDED, TOKEN
from cic_seeding.chain.rpc import JsonRpc
from cic_seeding.chain.signer import Signer
from cic_seeding.datadir import DataDir
from tests.helpers import run_cli
from tests.nodes.nodes import KINDS, Deployment, deploy, deploy_published, running_node

USERS = int(os.environ.get("CIC_NODE_MATRIX_USERS", "500"))
TRANSFER = TOKEN.topic("Transfer")
GAS_GIFT = 10**16  # the default gas_gift setting


def _logs(rpc: JsonRpc, address: str | None, topic: str) -> list[dict[str, object]]:
    query: dict[str, object] = {"fromBlock": "0x0", "toBlock": "latest", "topics": [topic]}
    if address:
        query["address"] = address
    return list(rpc.call("eth_getLogs", [query]))


def _word(hex_topic: object) -> str:
    return "0x" + str(hex_topic)[-40:].lower()


def _assert_exactly_once_from_logs(deployment: Deployment, data: Path, signer: str) -> None:
    rpc = JsonRpc(deployment.node.url, timeout=120)
    users = [u.address.lower() for u in DataDir(data).users()]
    opening = {"0x" + a: v for a, v in DataDir(data).balances().items()}
    added = Counter(_word(log["data"]) for log in _logs(rpc, None, ADDRESS_ADDED))
    assert {u: added[u] for u in users if added[u] != 1} == {}, "AddressAdded count != 1"
    transfers = _logs(rpc, None, TRANSFER)
    from_signer: Counter[str] = Counter()
    from_others: Counter[str] = Counter()
    amounts: dict[str, int] = {}
    for log in transfers:
        topics = log["topics"]
        assert isinstance(topics, list)
        sender, recipient = _word(topics[1]), _word(topics[2])
        if sender == signer:
            from_signer[recipient] += 1
            amounts[recipient] = int(str(log["data"]), 16)
        else:
            from_others[recipient] += 1
    assert {u: from_signer[u] for u in users if from_signer[u] != 1} == {}, \
        "opening-balance transfers from the signer != 1"
    assert {u: (amounts[u], opening[u]) for u in users if amounts[u] != opening[u]} == {}
    assert {u: from_others[u] for u in users if from_others[u] != 1} == {}, \
        "faucet transfers != 1"
    native = rpc.batch([("eth_getBalance", [u, "latest"]) for u in users])
    assert {u: int(n, 16) for u, n in zip(users, native, strict=True)
            if int(n, 16) != GAS_GIFT} == {}, "native balance != one gas gift"


def _seed_sync_verify(deployment: Deployment, data: Path) -> None:
    node = deployment.node
    done = run_cli("generate", "-q", "--dir", str(data), "--seed", "17",
                   "--chain-spec", deployment.chain_spec, str(USERS))
    assert done.returncode == 0, done.stderr
    steps = [("import", "eth", str(data), *deployment.chain_args()),
             ("sync", "eth", "--dir", str(data), *deployment.chain_args(), "--timeout", "900"),
             ("verify", str(data), "-p", node.url, "-r", deployment.registry)]
    for step in steps:
        done = run_cli(*step, env=deployment.env(), timeout=1200)
        assert done.returncode == 0, f"{step[0]} on {node.kind}: {done.stdout[-3000:]}" \
                                     f"{done.stderr[-3000:]}"
    _assert_exactly_once_from_logs(deployment, data, Signer.from_key(node.key).address.lower())


@pytest.mark.parametrize("kind", KINDS)
def test_seed_sync_verify_on_a_node_of_its_own(kind: str, tmp_path: Path) -> None:
    with running_node(kind, tmp_path / "node") as node:
        _seed_sync_verify(deploy(node, tmp_path / "node"), tmp_path / "data")


@pytest.mark.parametrize("kind", ["anvil-automine", "anvil-block-time"])
def test_the_published_contracts_on_a_self_mining_anvil(kind: str, tmp_path: Path) -> None:
    """The issue's own case: genuine CIC contracts, a plain anvil that mines by itself (on
    every transaction, or a block a second), started by nobody's devnet."""
    with running_node(kind, tmp_path / "node") as node:
        _seed_sync_verify(deploy_published(node, tmp_path / "node"), tmp_path / "data")
