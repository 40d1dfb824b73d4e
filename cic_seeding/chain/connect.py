"""From settings to a connected network: ``--devnet DIR`` or ``-p RPC -r REGISTRY -y KEYFILE``.

A devnet directory holds ``devnet.json`` (written by ``cic-seed devnet up``/``deploy``)::

    {"rpc_url": ..., "chain_spec": ..., "chain_id": ..., "registry": ...,
     "deployer": {"address": ..., "keyfile": "deployer.json", "password_file": "deployer.pw"},
     "mining": "explicit" | "auto", ...}

Explicit settings (``rpc_url``, ``registry_address``, ``keyfile``) override what the devnet
file says, so one can point a devnet's data at another node.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cic_seeding.chain.client import ChainClient
from cic_seeding.chain.reader import NetworkReader
from cic_seeding.chain.registry import CicNetwork
from cic_seeding.chain.rpc import JsonRpc
from cic_seeding.chain.signer import Signer, read_password
from cic_seeding.config import Settings
from cic_seeding.errors import ConfigError, RpcError
from cic_seeding.remote import BreakerPolicy

DEVNET_FILE = "devnet.json"


@dataclass(frozen=True)
class Endpoint:
    """Where the chain is and who signs (the password stays out of ``repr``)."""

    rpc_url: str
    registry: str | None
    keyfile: str | None
    chain_spec: str | None
    explicit_mining: bool
    password: str | None = None
    password_file: str | None = None

    def __repr__(self) -> str:
        return (f"Endpoint(rpc_url={self.rpc_url!r}, registry={self.registry!r}, "
                f"keyfile={self.keyfile!r})")


def read_devnet(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / DEVNET_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no {DEVNET_FILE} in {directory}",
                          hint="start a devnet there with `cic-seed devnet up --dir "
                          f"{directory}`") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if not isinstance(doc, dict) or "rpc_url" not in doc:
        raise ConfigError(f"{path} is not a devnet file (no rpc_url)")
    return doc


def endpoint(settings: Settings) -> Endpoint:
    """The endpoint the settings name; ConfigError saying what to give if they name none."""
    doc: dict[str, Any] = {}
    base = Path(".")
    if settings.devnet_dir:
        doc = read_devnet(settings.devnet_dir)
        base = Path(settings.devnet_dir)
    deployer = doc.get("deployer") or {}
    rpc_url = settings.rpc_url or doc.get("rpc_url")
    if not rpc_url:
        raise ConfigError("no chain given",
                          hint="give --devnet DIR, or -p RPC_URL -r REGISTRY -y KEYFILE "
                          "(CIC_DEVNET_DIR / CIC_RPC_URL ...)")
    keyfile = settings.keyfile or (str(base / deployer["keyfile"])
                                   if deployer.get("keyfile") else None)
    password_file = settings.keyfile_password_file or (
        str(base / deployer["password_file"]) if deployer.get("password_file")
        and not settings.keyfile else None)
    return Endpoint(
        rpc_url=rpc_url,
        registry=settings.registry_address or doc.get("registry"),
        keyfile=keyfile,
        chain_spec=doc.get("chain_spec") or settings.chain_spec,
        explicit_mining=doc.get("mining") == "explicit",
        password=settings.keyfile_password,
        password_file=password_file)


def mines_on_request(rpc: JsonRpc) -> bool:
    """True for a dev node (anvil, hardhat) with automine off: it mines only on ``evm_mine``."""
    try:
        return rpc.call("anvil_getAutomine") is False
    except RpcError:
        return False


def connect(settings: Settings, *, signer: bool = True) -> CicNetwork:
    """A client and network for the settings; with ``signer`` the keyfile is decrypted."""
    ep = endpoint(settings)
    rpc = JsonRpc(ep.rpc_url, timeout=settings.rpc_timeout, retries=settings.rpc_retries,
                  breaker=BreakerPolicy.from_settings(settings))
    key: Signer | None = None
    if signer:
        if not ep.keyfile:
            raise ConfigError("no signing key given",
                              hint="give -y KEYFILE (CIC_KEYFILE) or --devnet DIR")
        key = Signer.from_keyfile(ep.keyfile, read_password(ep.password, ep.password_file,
                                                            f"keyfile {ep.keyfile}"))
    if not ep.registry:
        raise ConfigError("no registry address given",
                          hint="give -r REGISTRY (CIC_REGISTRY_ADDRESS) or --devnet DIR")
    client = ChainClient(rpc, signer=key,
                         explicit_mining=ep.explicit_mining or mines_on_request(rpc))
    return CicNetwork(client, ep.registry)


def verify_chain(settings: Settings) -> NetworkReader:
    """The verifier's batched reader of the network and token the settings name."""
    return NetworkReader(connect(settings, signer=False), settings.token_symbol)
