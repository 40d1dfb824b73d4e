"""The genuine CIC contracts, as published, deployed onto any node with a funded key.

The contract packages of the CIC network are source distributions on PyPI, each carrying the
compiled creation code (``.bin``) and ABI (``.json``) of its contracts. :func:`fetch` downloads
the pinned versions once into a cache directory (``$CIC_GENUINE_CACHE``, else
``~/.cache/cic-seeding/genuine``), checks each archive's sha256 and extracts only those files;
:func:`deploy_genuine` then stands up a complete CIC network from them with one signer:

- ``Registry`` (eth-contract-registry) declaring the standard identifiers;
- ``AccountsIndex`` (eth-accounts-index), the deployer a writer;
- ``TokenUniqueSymbolIndex`` (eth-token-index) with the token registered, the deployer a writer;
- ``GiftableToken`` (eth-erc20) minted to the deployer; registered as ``DefaultToken`` too;
- ``ERC20Faucet`` with its ``ERC20FaucetStorage`` (erc20-faucet 0.8): the storage is handed to
  the faucet (``transferOwnership``: only its owner may mark an account paid), the faucet holds
  tokens and pays ``faucet_amount`` per recipient. Its ``giveTo`` takes any caller (the
  recipient must be in the accounts index and unpaid); its writers (``isWriter``, a mapping
  that does not include the owner) may only ``setAmount``, which the owner may too.

The function names are read from the published ABIs, not from ours (see :data:`CALLS`).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cic_seeding.chain.abi import ContractAbi
from cic_seeding.chain.client import ChainClient
from cic_seeding.chain.registry import IDENTIFIERS, key32
from cic_seeding.chain.tx import Call
from cic_seeding.errors import TransactionError

#: (package, version, sha256 of its sdist, {contract: path of its files inside the sdist,
#: without the suffix}).
PACKAGES: tuple[tuple[str, str, str, dict[str, str]], ...] = (
    ("eth-contract-registry", "0.11.0",
     "adfd1bc86e42cfc612cc3b1243dffcc388f26ec3c3ac438194201ce81299c792",
     {"Registry": "eth_contract_registry/data/Registry"}),
    ("eth-accounts-index", "0.6.0",
     "94e29847ba48a381033d0a145e254a1064cbd2d985df87ad0c389dab0b9f3a20",
     {"AccountsIndex": "eth_accounts_index/data/AccountsIndex"}),
    ("eth-token-index", "0.6.3",
     "1b548ad391663615f7734056da20eb1ac57d6d9d6ac4e36a6f921e5c07029942",
     {"TokenUniqueSymbolIndex": "eth_token_index/data/TokenUniqueSymbolIndex"}),
    ("eth-erc20", "0.9.0",
     "0ea4cf274560c19c73cee0104afedb31374b1aa9ac1d2719b1e6f6df2be4b3c4",
     {"GiftableToken": "giftable_erc20_token/data/GiftableToken"}),
    ("erc20-faucet", "0.8.0",
     "5ea9a3f1fdb641cd4fa13f5aaa70c9e1b1e4693efda97f3171dc9722c8cabaf1",
     {"ERC20Faucet": "erc20_faucet/data/ERC20Faucet",
      "ERC20FaucetStorage": "erc20_faucet/data/ERC20FaucetStorage"}),
)

CACHE_ENV = "CIC_GENUINE_CACHE"

#: Every state-changing function the deployment calls, by contract: each must be in the
#: published ABI (``test_genuine_abis_have_what_we_call`` holds them to it).
CALLS = {
    "Registry": ("set",),
    "AccountsIndex": ("addWriter",),
    "TokenUniqueSymbolIndex": ("addWriter", "register"),
    "GiftableToken": ("mintTo",),
    "ERC20Faucet": ("setAmount",),
    "ERC20FaucetStorage": ("transferOwnership",),
}


def cache_dir() -> Path:
    """Where the sdists and the extracted contract files are kept (not in the repository)."""
    given = os.environ.get(CACHE_ENV)
    return Path(given).expanduser() if given else Path.home() / ".cache" / "cic-seeding" / \
        "genuine"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _download(package: str, version: str, sha256: str, into: Path) -> Path:
    """The sdist of ``package==version`` in ``into``, downloaded with pip if it is not there
    yet; RuntimeError if pip fails or the archive is not the pinned one."""
    name = f"{package}-{version}.tar.gz"
    target = into / name
    if target.is_file() and _sha256(target) == sha256:
        return target
    into.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=into) as tmp:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             "--disable-pip-version-check", "-q", "-d", tmp, f"{package}=={version}"],
            capture_output=True, text=True, timeout=300)
        got = Path(tmp) / name
        if done.returncode != 0 or not got.is_file():
            raise RuntimeError(f"pip download {package}=={version} failed: "
                               f"{(done.stderr or done.stdout).strip()[-2000:]}")
        if _sha256(got) != sha256:
            raise RuntimeError(f"{name} from the package index has sha256 {_sha256(got)}, "
                               f"not the pinned {sha256}")
        os.replace(got, target)
    return target


def _write_atomic(path: Path, data: bytes) -> None:
    """Another test session reading the cache at the same time sees the whole file or none."""
    part = path.with_name(f".{path.name}.{os.getpid()}")
    part.write_bytes(data)
    os.replace(part, path)


def fetch(cache: Path | None = None) -> dict[str, ContractAbi]:
    """Every genuine contract by name (ABI and creation code), from the cache, downloading what
    is missing."""
    cache = cache or cache_dir()
    out: dict[str, ContractAbi] = {}
    for package, version, sha256, contracts in PACKAGES:
        extracted = cache / f"{package}-{version}"
        if not all((extracted / f"{c}.json").is_file() and (extracted / f"{c}.bin").is_file()
                   for c in contracts):
            sdist = _download(package, version, sha256, cache / "sdist")
            extracted.mkdir(parents=True, exist_ok=True)
            with tarfile.open(sdist) as tar:
                for contract, inner in contracts.items():
                    for suffix in (".json", ".bin"):
                        member = tar.getmember(f"{package}-{version}/{inner}{suffix}")
                        data = tar.extractfile(member)
                        assert data is not None, member.name
                        _write_atomic(extracted / f"{contract}{suffix}", data.read())
        for contract in contracts:
            abi = json.loads((extracted / f"{contract}.json").read_text())
            code = (extracted / f"{contract}.bin").read_text().strip()
            out[contract] = ContractAbi(contract, abi, code)
    return out


@dataclass(frozen=True)
class GenuineOptions:
    token_symbol: str = "GFT"
    token_name: str = "Giftable Token"
    decimals: int = 6
    supply_units: int = 10**12  # whole tokens minted to the deployer
    faucet_amount_units: int = 5  # whole tokens per faucet payout
    faucet_funds_units: int = 10**9  # whole tokens the faucet holds


@dataclass
class GenuineNetwork:
    registry: str
    contracts: dict[str, str] = field(default_factory=dict)
    deployer: str = ""
    faucet_amount: int = 0
    decimals: int = 6


class _Deployer:
    def __init__(self, client: ChainClient, abis: dict[str, ContractAbi]) -> None:
        self.client = client
        self.abis = abis

    def create(self, name: str, *args: Any, gas: int = 4_000_000) -> str:
        from eth_utils import to_checksum_address

        receipt = self.client.transact(Call(None, self.abis[name].deploy_data(*args), gas=gas),
                                       f"deploying genuine {name}")
        if not receipt.contract_address:
            raise TransactionError(f"deploying {name}: no contract address in the receipt")
        return str(to_checksum_address(receipt.contract_address))

    def send(self, to: str, name: str, fn: str, *args: Any, gas: int = 300_000) -> None:
        self.client.transact(Call(to, self.abis[name].encode(fn, *args), gas=gas),
                             f"genuine {name}.{fn}")

    def read(self, to: str, name: str, fn: str, *args: Any) -> Any:
        return self.client.call(to, self.abis[name].fn(fn), *args)


def deploy_genuine(client: ChainClient, options: GenuineOptions | None = None,
                   abis: dict[str, ContractAbi] | None = None) -> GenuineNetwork:
    """A complete CIC network of the published contracts, deployed with ``client``'s signer."""
    options = options or GenuineOptions()
    d = _Deployer(client, abis or fetch())
    assert client.signer is not None
    me = client.signer.address
    unit = 10**options.decimals

    registry = d.create("Registry", [key32(n) for n in IDENTIFIERS])
    index = d.create("AccountsIndex")
    token_index = d.create("TokenUniqueSymbolIndex")
    token = d.create("GiftableToken", options.token_name, options.token_symbol,
                     options.decimals, 0)
    store = d.create("ERC20FaucetStorage")
    faucet = d.create("ERC20Faucet", token, store, index)

    for address, name in ((index, "AccountsIndex"), (token_index, "TokenUniqueSymbolIndex")):
        # the token index 0.6.3 has no isWriter to ask first
        if "isWriter" not in d.abis[name].functions or not d.read(address, name, "isWriter", me):
            d.send(address, name, "addWriter", me)
    d.send(token_index, "TokenUniqueSymbolIndex", "register", token)
    d.send(store, "ERC20FaucetStorage", "transferOwnership", faucet)
    for name, address in (("ContractRegistry", registry), ("AccountRegistry", index),
                          ("TokenRegistry", token_index), ("Faucet", faucet),
                          ("DefaultToken", token)):
        d.send(registry, "Registry", "set", key32(name), address)
    d.send(token, "GiftableToken", "mintTo", me, options.supply_units * unit)
    d.send(token, "GiftableToken", "mintTo", faucet, options.faucet_funds_units * unit)
    amount = options.faucet_amount_units * unit
    d.send(faucet, "ERC20Faucet", "setAmount", amount)
    return GenuineNetwork(
        registry=registry,
        contracts={"Registry": registry, "AccountsIndex": index,
                   "TokenUniqueSymbolIndex": token_index, "GiftableToken": token,
                   "ERC20FaucetStorage": store, "ERC20Faucet": faucet},
        deployer=me, faucet_amount=amount, decimals=options.decimals)
