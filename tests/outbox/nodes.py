"""Nodes that mine by themselves (anvil without ``--no-mining``), the CIC contracts deployed on
them with ``cic-seed devnet deploy``, seeding through the CLI with ``-p -r -y`` as an operator
would against a real node, and what the chain's own logs say each user got."""

from __future__ import annotations

import json
import re
import secrets
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import eth_keyfile

from cic_devnet.anvil import rpc, start_anvil
from cic_seeding.chain.client import ChainClient
from cic_seeding.chain.registry import ADDRESS_ADDED, TOKEN, CicNetwork
from cic_seeding.chain.rpc import JsonRpc
from cic_seeding.chain.signer import Signer
from cic_seeding.datadir import DataDir
from cic_seeding.generate.generator import GenerateOptions, generate
from tests.helpers import run_cli

CHAIN_ID = 8996
TRANSFER = TOKEN.topic("Transfer")
_COUNTS = re.compile(r"transactions: (\d+) sent, (\d+) rebroadcast, (\d+) replaced, "
                     r"(\d+) bumped")


@dataclass(frozen=True)
class Node:
    url: str
    registry: str
    keyfile: Path
    password_file: Path
    signer: str  # 0x lower-case

    def env(self) -> dict[str, str]:
        return {"CIC_KEYFILE_PASSWORD_FILE": str(self.password_file)}

    def chain_args(self) -> list[str]:
        return ["-p", self.url, "-r", self.registry, "-y", str(self.keyfile)]


@contextmanager
def self_mining_node(directory: Path, *, block_time: float | None = None) -> Iterator[Node]:
    """anvil mining by itself (automine, or a block every ``block_time`` s), a fresh deployer
    key given coin with ``anvil_setBalance``, the contracts deployed through the CLI."""
    directory.mkdir(parents=True, exist_ok=True)
    anvil = start_anvil(chain_id=CHAIN_ID, log_file=directory / "anvil.log", automine=True,
                        block_time=block_time)
    try:
        key = secrets.token_bytes(32)
        password = secrets.token_hex(8)
        keyfile, password_file = directory / "deployer.json", directory / "deployer.pw"
        keyfile.write_text(json.dumps(eth_keyfile.create_keyfile_json(
            key, password.encode(), kdf="scrypt", iterations=2**4)))
        password_file.write_text(password)
        signer = Signer.from_key(key).address
        rpc(anvil.url, "anvil_setBalance", [signer, hex(10**24)])
        node = Node(anvil.url, "", keyfile, password_file, signer.lower())
        deployed = run_cli("devnet", "deploy", "--rpc", anvil.url, "--keyfile", str(keyfile),
                           "--dir", str(directory / "devnet"), cwd=directory, env=node.env())
        assert deployed.returncode == 0, deployed.stderr
        yield Node(anvil.url, deployed.stdout.strip().splitlines()[-1], keyfile,
                   password_file, signer.lower())
    finally:
        anvil.stop()


def make_data(directory: Path, count: int, seed: int) -> Path:
    data = directory / "data"
    generate(GenerateOptions(directory=data, count=count, seed=seed, workers=2))
    return data


def seed_cli(node: Node, data: Path, *command: str, timeout: float = 600) -> dict[str, int]:
    """``cic-seed COMMAND --dir DATA -p -r -y`` must exit 0; the counts of its summary."""
    done = run_cli(*command, "--dir", str(data), *node.chain_args(), cwd=data.parent,
                   env=node.env(), timeout=timeout)
    assert done.returncode == 0, f"{command}: exit {done.returncode}\n{done.stdout}\n" \
                                 f"{done.stderr[-3000:]}"
    found = _COUNTS.search(done.stdout)
    assert found, done.stdout
    sent, rebroadcast, replaced, bumped = (int(g) for g in found.groups())
    return {"sent": sent, "rebroadcast": rebroadcast, "replaced": replaced, "bumped": bumped}


def verify_cli(node: Node, data: Path) -> None:
    done = run_cli("verify", str(data), "-p", node.url, "-r", node.registry, "-q",
                   cwd=data.parent, timeout=600)
    assert done.returncode == 0, f"verify: exit {done.returncode}\n{done.stdout[-3000:]}"


@dataclass(frozen=True)
class Effects:
    """What the chain's logs say each address got."""

    registrations: Counter[str]  # AddressAdded of the registry's AccountsIndex
    transfers: Counter[tuple[str, str]]  # (from, to) of the token's Transfer events
    native: dict[str, int]


def effects(node: Node, users: list[str]) -> Effects:
    client = ChainClient(JsonRpc(node.url))
    network = CicNetwork(client, node.registry)
    head = client.head()
    added = client.logs(network.accounts_index, ADDRESS_ADDED, 0, head)
    moved = client.logs(network.token().address, TRANSFER, 0, head)
    return Effects(
        Counter("0x" + str(e["data"])[-40:].lower() for e in added),
        Counter(("0x" + e["topics"][1][-40:].lower(), "0x" + e["topics"][2][-40:].lower())
                for e in moved),
        dict(zip(users, client.native_balances(users), strict=True)))


def assert_each_paid_once(node: Node, data: Path, gas_gift: int = 10**16) -> None:
    """Every user of ``data`` registered once, one opening-balance Transfer from the signer
    (none for a zero balance), one faucet Transfer, exactly one gas gift -- from the logs."""
    users = [u.address.lower() for u in DataDir(data).users()]
    opening = DataDir(data).balances()
    faucet = CicNetwork(ChainClient(JsonRpc(node.url)), node.registry).faucet.lower()
    got = effects(node, users)
    wrong = {}
    for u in users:
        want = (1, 1 if opening[u[2:]] > 0 else 0, 1, gas_gift)
        have = (got.registrations[u], got.transfers[(node.signer, u)],
                got.transfers[(faucet, u)], got.native[u])
        if have != want:
            wrong[u] = (have, want)
    assert wrong == {}, f"{len(wrong)} users not paid exactly once (have, want): " \
                        f"{dict(list(wrong.items())[:5])}"
