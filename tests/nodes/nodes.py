"""Nodes of other kinds than our devnet, started the way their users start them.

Each kind is a real process on a free 127.0.0.1 port with its own defaults (mining, chain id,
prefunded dev account): plain ``anvil`` (automine), ``anvil --block-time 1``, ``anvil
--no-mining`` (the mode our devnet uses; the client mines), ``ganache`` and the Hardhat node
(both npm dev dependencies of this project). Nothing of ours runs inside them; the contracts
are deployed with ``cic-seed devnet deploy`` as a user would onto a node of their own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from cic_devnet.anvil import anvil_binary, dev_key
from cic_seeding.chain.keyfile import encrypt_v3
from tests.helpers import ROOT, free_port, run_cli

#: ganache's first account with ``--wallet.deterministic``.
GANACHE_KEY = "0x4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d"
BIN = ROOT / "node_modules" / ".bin"
HARDHAT = Path(__file__).parent / "hardhat"

KINDS = ("anvil-automine", "anvil-block-time", "anvil-no-mining", "ganache", "hardhat")


@dataclass(frozen=True)
class Node:
    kind: str
    url: str
    chain_id: int
    key: str  # a prefunded dev account's private key (0x hex)
    pid: int


def _command(kind: str, port: int, workdir: Path) -> tuple[list[str], int, str]:
    """(argv, chain id, funded key) of ``kind`` listening on ``port``."""
    anvil = [str(anvil_binary()), "--host", "127.0.0.1", "--port", str(port),
             "--chain-id", "31337", "--accounts", "1", "--color", "never"]
    if kind == "anvil-automine":
        return anvil, 31337, dev_key(0)
    if kind == "anvil-block-time":
        return [*anvil, "--block-time", "1"], 31337, dev_key(0)
    if kind == "anvil-no-mining":
        return [*anvil, "--no-mining"], 31337, dev_key(0)
    if kind == "ganache":
        return [str(BIN / "ganache"), "--server.host", "127.0.0.1", "--server.port", str(port),
                "--chain.chainId", "1337", "--wallet.deterministic", "--wallet.totalAccounts",
                "1", "--miner.blockGasLimit", "60000000", "--logging.quiet"], 1337, GANACHE_KEY
    if kind == "hardhat":  # runs in HARDHAT, inside the project, where its package resolves
        return [str(BIN / "hardhat"), "--config", str(HARDHAT / "hardhat.config.js"), "node",
                "--hostname", "127.0.0.1", "--port", str(port)], 31337, dev_key(0)
    raise ValueError(f"unknown node kind {kind!r}; kinds: {', '.join(KINDS)}")


def _chain_id(url: str) -> int | None:
    try:
        answer = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId",
                                          "params": []}, timeout=2).json()
    except (requests.RequestException, ValueError):
        return None
    return int(answer["result"], 16) if isinstance(answer, dict) and "result" in answer \
        else None


@contextmanager
def running_node(kind: str, workdir: Path, *, timeout: float = 90.0) -> Iterator[Node]:
    """A node of ``kind`` until the block ends; stopped by pid (its process group) after."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv, chain_id, key = _command(kind, port, workdir)
    url = f"http://127.0.0.1:{port}"
    log = open(workdir / f"{kind}.log", "ab")  # noqa: SIM115 (closed below, after the node)
    proc = subprocess.Popen(argv, cwd=HARDHAT if kind == "hardhat" else workdir,
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while _chain_id(url) != chain_id:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{kind} did not come up on {url}: "
                                   + (workdir / f"{kind}.log").read_text(errors="replace")[-2000:])
            time.sleep(0.2)
        yield Node(kind, url, chain_id, key, proc.pid)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)
        log.close()


@dataclass(frozen=True)
class Deployment:
    """What a user of a CIC network on that node has: ``-p``, ``-r``, ``-y`` and a password."""

    node: Node
    registry: str
    keyfile: Path
    password_file: Path
    chain_spec: str

    def chain_args(self) -> list[str]:
        return ["-p", self.node.url, "-r", self.registry, "-y", str(self.keyfile)]

    def env(self) -> dict[str, str]:
        return {"CIC_KEYFILE_PASSWORD_FILE": str(self.password_file)}


def _signer_files(node: Node, workdir: Path) -> tuple[Path, Path]:
    """The node's funded dev account as a v3 keyfile and its password file (both 0600)."""
    keyfile, password_file = workdir / "signer.json", workdir / "signer.pw"
    password_file.write_text("matrix", encoding="utf-8")
    keyfile.write_text(json.dumps(encrypt_v3(bytes.fromhex(node.key[2:]), "matrix", n=2**8)),
                       encoding="utf-8")
    keyfile.chmod(0o600)
    password_file.chmod(0o600)
    return keyfile, password_file


def chain_spec(node: Node) -> str:
    return f"evm:byzantium:{node.chain_id}:{node.kind.replace('-', '_')}"


def deploy_published(node: Node, workdir: Path) -> Deployment:
    """The published CIC contracts (tests/genuine/network.py) on ``node``."""
    from cic_seeding.chain.client import ChainClient
    from cic_seeding.chain.rpc import JsonRpc
    from cic_seeding.chain.signer import Signer
    from tests.genuine.network import deploy_genuine

    keyfile, password_file = _signer_files(node, workdir)
    client = ChainClient(JsonRpc(node.url), signer=Signer.from_key(node.key),
                         explicit_mining=node.kind == "anvil-no-mining")
    network = deploy_genuine(client)
    return Deployment(node, network.registry, keyfile, password_file, chain_spec(node))


def deploy(node: Node, workdir: Path) -> Deployment:
    """The CIC contracts on ``node``, deployed by its funded dev account through the CLI."""
    keyfile, password_file = _signer_files(node, workdir)
    spec = chain_spec(node)
    done = run_cli("devnet", "deploy", "--rpc", node.url, "--keyfile", str(keyfile),
                   "--dir", str(workdir / "deployment"), "--chain-spec", spec,
                   env={"CIC_KEYFILE_PASSWORD_FILE": str(password_file)})
    assert done.returncode == 0, done.stderr
    registry = done.stdout.strip().splitlines()[-1]
    return Deployment(node, registry, keyfile, password_file, spec)
