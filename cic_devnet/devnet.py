"""A local devnet: anvil with the CIC contracts, described by ``DIR/devnet.json``.

``devnet_up`` starts anvil on 127.0.0.1 (``--no-mining``: clients mine explicitly), writes the
deployer's keyfile and password file (mode 0600), deploys and wires the contracts (or, with a
state file that already holds them, checks that they are there) and writes ``devnet.json``.
``devnet_down`` stops what ``devnet.json`` names, by process id, and drops the PostgreSQL
schemas its ``devnet_up`` made for the custodial engine and the USSD gateway.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import eth_keyfile

from cic_devnet._pgschemas import drop_recorded
from cic_devnet._pgschemas import record as record_schema
from cic_devnet._pids import runs
from cic_devnet._server import require_extra
from cic_devnet.deploy import DeployOptions, deploy_cic
from cic_seeding.chain.client import ChainClient
from cic_seeding.chain.registry import CicNetwork
from cic_seeding.chain.rpc import JsonRpc
from cic_seeding.chain.signer import Signer
from cic_seeding.config import DEVNET_FILE
from cic_seeding.datadir.store import atomic_write
from cic_seeding.errors import ConfigError, ServiceError, UsageError
from cic_seeding.records.chainspec import ChainSpec

if TYPE_CHECKING:
    from cic_devnet.anvil import AnvilProcess
    from cic_devnet.custodial.devnet import EngineOptions
    from cic_devnet.custodial.embedded import EmbeddedEngine

log = logging.getLogger(__name__)

DEFAULT_CHAIN_SPEC = "evm:byzantium:8996:bloxberg"
KEYFILE, PASSWORD_FILE, META_TOKEN_FILE = "deployer.json", "deployer.pw", "meta.token"
#: Block gas limit of the devnet chain. Seeding packs blocks on purpose (on anvil a block costs
#: time in proportion to the whole state, so few full blocks are fastest): the batch path uses
#: up to ~0.8G gas a block. Those must stay under the EIP-1559 target (half the limit), or the
#: base fee rises 12.5 % a block until transactions priced a few blocks earlier cannot be mined.
BLOCK_GAS_LIMIT = 3_000_000_000
#: Block states anvil keeps in memory (older ones are dropped; blocks and receipts stay).
KEEP_STATES = 16


@dataclass
class Devnet:
    """A running devnet; ``info`` is the content of devnet.json. ``engine``: the custodial
    engine when it runs embedded in this process."""

    directory: Path
    info: dict[str, Any]
    anvil: AnvilProcess | None = field(default=None, repr=False)
    engine: EmbeddedEngine | None = field(default=None, repr=False)

    @property
    def rpc_url(self) -> str:
        return str(self.info["rpc_url"])

    @property
    def registry(self) -> str:
        return str(self.info["registry"])

    def close(self) -> None:
        """Stop what runs in this process (an embedded custodial engine); the rest stays."""
        if self.engine is not None:
            self.engine.stop()
            self.engine = None

    def stop(self) -> None:
        self.close()
        if self.anvil is not None:
            self.anvil.stop()
        devnet_down(self.directory)


@dataclass(frozen=True)
class Service:
    """One process of a running devnet: what it is, its pid and where it answers."""

    name: str
    pid: int
    address: str


def devnet_services(info: dict[str, Any]) -> list[Service]:
    """The processes devnet.json ``info`` names that run (anvil, the metadata server, each
    custodial worker, the USSD gateway); an engine embedded in a process has none of its own.
    ``devnet down`` stops them all; ``kill PID`` (SIGTERM) one."""
    from cic_devnet.custodial.process import MARKER as ENGINE
    from cic_devnet.meta.process import MARKER as META
    from cic_devnet.ussd.process import MARKER as USSD

    out = []
    anvil, meta = info.get("anvil") or {}, info.get("meta") or {}
    engine, ussd = info.get("custodial") or {}, info.get("ussd") or {}
    if anvil.get("pid") and runs(int(anvil["pid"]), "anvil"):
        out.append(Service("anvil", int(anvil["pid"]), str(info.get("rpc_url"))))
    if meta.get("pid") and runs(int(meta["pid"]), META):
        out.append(Service("metadata server", int(meta["pid"]), str(meta.get("url"))))
    for worker in engine.get("workers") or []:
        if worker.get("pid") and runs(int(worker["pid"]), ENGINE):
            out.append(Service("custodial engine", int(worker["pid"]),
                               f"queue {engine.get('queue')} on {engine.get('broker_url')}"))
    if ussd.get("pid") and runs(int(ussd["pid"]), USSD):
        out.append(Service("USSD gateway", int(ussd["pid"]),
                           f"{ussd.get('url')} (service code {ussd.get('service_code')})"))
    return out


def _write_deployer(directory: Path, key: str) -> None:
    password = secrets.token_hex(16)
    doc = eth_keyfile.create_keyfile_json(bytes.fromhex(key.removeprefix("0x")),
                                          password.encode(), kdf="scrypt", iterations=2**12)
    atomic_write(directory / PASSWORD_FILE, password.encode(), 0o600)
    atomic_write(directory / KEYFILE, json.dumps(doc).encode(), 0o600)


def _running(info: dict[str, Any]) -> bool:
    pid = (info.get("anvil") or {}).get("pid")
    if not pid:
        return False
    return runs(int(pid), "anvil")


def devnet_up(directory: str | Path, *, port: int = 0, state: str | Path | None = None,
              chain_spec: str = DEFAULT_CHAIN_SPEC,
              options: DeployOptions | None = None, detach: bool = False,
              meta: bool = False, meta_db: str | None = None, custodial: bool = False,
              custodial_options: EngineOptions | None = None, ussd: bool = False,
              ussd_db: str | None = None, ussd_schema: str | None = None) -> Devnet:
    """Start anvil and deploy (or reload) the CIC contracts; returns the running devnet.

    ``detach`` lets the processes outlive this one (``cic-seed devnet up``); stop them with
    :func:`devnet_down`. ``meta`` also starts the metadata server, on ``meta_db`` (a
    postgresql:// URL) or embedded (SQLite ``DIR/meta.db``); its URL and the file holding its
    write token go into devnet.json. ``custodial`` also starts the custodial engine's workers
    (:func:`cic_devnet.custodial.devnet.start_engine`); where it is goes into devnet.json. With
    ``custodial_options.embedded`` (no PostgreSQL, no Redis: SQLite) the engine runs in this
    process instead (in-memory broker), which :meth:`Devnet.close` or :meth:`Devnet.stop`
    ends; with ``detach`` too, it runs as one worker process of its own on the same SQLite
    file, its broker and replies files in ``DIR/custodial-spool``
    (:func:`cic_devnet.custodial.devnet.spooled`), and outlives this process like the rest.
    ``ussd`` also starts the USSD gateway (and with it the metadata server and the engine),
    its accounts in PostgreSQL ``ussd_db`` (default: the engine's) schema ``ussd_schema``
    (default: a fresh one per chain)."""
    from cic_devnet.anvil import dev_key, start_anvil

    meta, custodial = meta or ussd, custodial or ussd
    for extra, wanted in (("ussd", ussd), ("meta", meta), ("custodial", custodial)):
        if wanted:  # before anything starts
            require_extra(extra, f"devnet up --{extra}")
    serverless = bool(custodial and custodial_options and custodial_options.embedded)
    if ussd and serverless:
        raise UsageError("the USSD gateway cannot use a custodial engine without Redis: its "
                           "sessions and its engine's tasks go through Redis",
                           hint="configure PostgreSQL and Redis for the engine "
                           "(custodial_db_url, custodial_broker_url)")
    embedded = serverless and not detach
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / DEVNET_FILE
    previous: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    if previous and _running(previous):
        raise ServiceError(f"a devnet already runs from {directory} "
                           f"(anvil pid {previous['anvil']['pid']}, {previous['rpc_url']})",
                           hint=f"stop it with `cic-seed devnet down --dir {directory}`")
    if serverless and detach and custodial_options is not None:
        # it must outlive this process: a process of its own, its wires files
        from cic_devnet.custodial.devnet import spooled

        custodial_options = spooled(custodial_options, directory)
    spec = ChainSpec.parse(chain_spec)
    state_path = Path(state).resolve() if state else None
    reload = bool(state_path and state_path.is_file() and previous.get("registry"))
    anvil = start_anvil(port=port, chain_id=spec.network_id, state=state_path,
                        log_file=directory / "anvil.log", detach=detach,
                        block_gas_limit=BLOCK_GAS_LIMIT, keep_states=KEEP_STATES)
    engine: EmbeddedEngine | None = None
    try:
        if not (directory / KEYFILE).is_file():
            _write_deployer(directory, dev_key(0))
        client = ChainClient(JsonRpc(anvil.url), signer=Signer.from_key(dev_key(0)),
                             explicit_mining=True)
        if reload:
            info = _reloaded(previous, client)
        else:
            deployment = deploy_cic(client, options or DeployOptions())
            info = {**deployment.to_dict(), "chain_spec": str(spec)}
        info.update({
            "rpc_url": anvil.url, "chain_id": spec.network_id, "mining": "explicit",
            "deployer": {"address": client.signer.address if client.signer else "",
                         "keyfile": KEYFILE, "password_file": PASSWORD_FILE},
            "anvil": {"pid": anvil.pid, "port": anvil.port,
                      "state": str(state_path) if state_path else None,
                      "log": str(directory / "anvil.log")}})
        if meta:
            info["meta"] = _start_meta(directory, meta_db, detach)
        if embedded:
            from cic_devnet.custodial.devnet import start_embedded

            engine = start_embedded(directory, client, info["registry"], custodial_options,
                                    previous=previous.get("custodial") if reload else None,
                                    chain_spec=info.get("chain_spec"))
            info["custodial"] = engine.info
        elif custodial:
            info["custodial"] = _start_custodial(
                directory, client, info, previous.get("custodial") if reload else None,
                custodial_options, detach)
        elif "custodial" in info:
            info.pop("custodial")
        if ussd:
            info["ussd"] = _start_ussd(directory, info, previous.get("ussd") if reload else None,
                                       ussd_db or (custodial_options.db_url
                                                   if custodial_options else None),
                                       ussd_schema, detach)
        elif "ussd" in info:
            info.pop("ussd")
        _write_info(path, info)
    except BaseException:
        if engine is not None:
            engine.stop()
        anvil.stop()
        _stop_ussd(info if "info" in locals() else {})
        _stop_meta(info if "info" in locals() else {})
        _stop_custodial(info if "info" in locals() else {})
        try:
            drop_recorded(directory, keep=state_path is not None)
        except Exception as exc:  # the error being raised is the one to see
            log.warning("could not drop the PostgreSQL schemas of %s: %s", directory, exc)
        raise
    log.info("devnet up: %s, registry %s", anvil.url, info["registry"])
    return Devnet(directory, info, anvil, engine)


def _start_meta(directory: Path, db: str | None, detach: bool) -> dict[str, Any]:
    from cic_devnet.meta.process import start_meta_server

    server = start_meta_server(db=db or str(directory / "meta.db"),
                               log_file=str(directory / "meta.log"), detach=detach)
    atomic_write(directory / META_TOKEN_FILE, server.token.encode(), 0o600)
    return {"url": server.url, "pid": server.pid, "token_file": META_TOKEN_FILE,
            "store": "postgresql" if db else "sqlite"}


def _start_custodial(directory: Path, client: ChainClient, info: dict[str, Any],
                     previous: dict[str, Any] | None, options: EngineOptions | None,
                     detach: bool) -> dict[str, Any]:
    """The engine's workers; a reloaded chain keeps its engine state (``previous``), a fresh
    chain gets a fresh schema (nonce counters of another chain would be wrong)."""
    from cic_devnet.custodial.devnet import start_engine

    return start_engine(directory, client, info["registry"], options, previous=previous,
                        chain_spec=info.get("chain_spec"), detach=detach)


def _write_info(path: Path, info: dict[str, Any]) -> None:
    """devnet.json, readable by its owner only: it holds the USSD gateway's database URL (the
    ``cic_ussd`` importer writes there), which may carry a password."""
    atomic_write(path, (json.dumps(info, indent=2, sort_keys=True) + "\n").encode(), 0o600)


def _start_ussd(directory: Path, info: dict[str, Any], previous: dict[str, Any] | None,
                db: str | None, schema: str | None, detach: bool) -> dict[str, Any]:
    """The USSD gateway, beside the metadata server and custodial engine just started."""
    from cic_devnet.custodial.devnet import DEFAULT_DB
    from cic_devnet.ussd.process import GatewayOptions, start_gateway

    previous = previous or {}
    engine, meta = info["custodial"], info["meta"]
    fresh = f"ussd_{secrets.token_hex(6)}"
    options = GatewayOptions(
        db=db or DEFAULT_DB, redis=engine["broker_url"], broker=engine["broker_url"],
        queue=engine["queue"], meta_url=meta["url"],
        meta_token=(directory / meta["token_file"]).read_text().strip(),
        chain_spec=info["chain_spec"], schema=schema or previous.get("schema") or fresh)
    if options.schema == fresh:  # ours, made now: `devnet down` drops it
        record_schema(directory, options.db, fresh, "USSD gateway")
    gateway = start_gateway(options, log_file=str(directory / "ussd.log"), detach=detach)
    return {"url": gateway.url, "pid": gateway.pid, "service_code": gateway.service_code,
            "db": options.db, "schema": options.schema, "log": str(directory / "ussd.log")}


def _stop_ussd(info: dict[str, Any]) -> bool:
    from cic_devnet.ussd.process import stop_gateway_pid

    ussd = info.get("ussd") or {}
    stopped = bool(ussd.get("pid")) and stop_gateway_pid(int(ussd["pid"]))
    if ussd:
        ussd["pid"] = None
    return stopped


def _stop_custodial(info: dict[str, Any]) -> bool:
    from cic_devnet.custodial.devnet import stop_engine

    return stop_engine(info.get("custodial") or {})


def _stop_meta(info: dict[str, Any]) -> bool:
    from cic_devnet.meta.process import stop_meta_pid

    meta = info.get("meta") or {}
    stopped = bool(meta.get("pid")) and stop_meta_pid(int(meta["pid"]))
    if meta:
        meta["pid"] = None
    return stopped


def _reloaded(previous: dict[str, Any], client: ChainClient) -> dict[str, Any]:
    """Check the reloaded chain still holds the deployment devnet.json names."""
    network = CicNetwork(client, previous["registry"])
    try:
        network.check_registry()
        network.accounts_index  # noqa: B018 -- resolving is the check
        network.token()
    except Exception as exc:
        raise ServiceError(f"the state file did not restore the devnet's contracts: {exc}",
                           hint="start without --state (or with a new state file) to deploy "
                           "afresh") from None
    return dict(previous)


def devnet_down(directory: str | Path, timeout: float = 15.0) -> bool:
    """Stop the devnet of ``directory``; False if it was not running.

    Then drop the PostgreSQL schemas its ``up`` made (``pg-schemas.json``, see
    :mod:`cic_devnet._pgschemas`), once every process using them has stopped; a devnet with a
    state file keeps them for the reload. A database that does not answer costs one warning
    line, never the stop: run ``down`` again, it only drops what is still recorded."""
    from cic_devnet.anvil import stop_pid

    path = Path(directory) / DEVNET_FILE
    if not path.is_file():
        raise ServiceError(f"no devnet in {directory} (no {DEVNET_FILE})")
    info = json.loads(path.read_text())
    anvil = info.get("anvil") or {}
    stopped = bool(anvil.get("pid")) and stop_pid(int(anvil["pid"]), timeout).was_running
    stopped = _stop_ussd(info) or stopped
    stopped = _stop_meta(info) or stopped
    stopped = _stop_custodial(info) or stopped
    anvil["pid"] = None
    info["anvil"] = anvil
    _write_info(path, info)
    drop_recorded(Path(directory), keep=bool(anvil.get("state")))
    return stopped


def devnet_deploy(rpc_url: str, signer: Signer, directory: str | Path,
                  chain_spec: str = DEFAULT_CHAIN_SPEC,
                  options: DeployOptions | None = None, *, keyfile: str | None = None,
                  password_file: str | None = None) -> dict[str, Any]:
    """Deploy onto an existing node and write ``devnet.json`` for it (no process to stop)."""
    from cic_seeding.chain.connect import mines_on_request

    directory = Path(directory).resolve()
    path = directory / DEVNET_FILE
    if path.exists():  # its users' data would name contracts devnet.json no longer does
        raise ConfigError(f"{path} already names a deployment; deploying again would replace "
                          "it and leave the data seeded against it pointing nowhere",
                          hint="give another --devnet DIR, or remove that devnet.json first")
    directory.mkdir(parents=True, exist_ok=True)
    rpc = JsonRpc(rpc_url)
    client = ChainClient(rpc, signer=signer, explicit_mining=mines_on_request(rpc))
    spec = ChainSpec.parse(chain_spec)
    if client.chain_id != spec.network_id:
        raise ConfigError(f"{rpc_url} has chain id {client.chain_id}, but the chain spec "
                          f"{spec} says {spec.network_id}", hint="pass --chain-spec to match")
    info = {**deploy_cic(client, options or DeployOptions()).to_dict(), "chain_spec": str(spec),
            "rpc_url": rpc_url, "chain_id": spec.network_id,
            "mining": "explicit" if client.explicit_mining else "auto",
            "deployer": {"address": signer.address,
                         "keyfile": os.path.abspath(keyfile) if keyfile else None,
                         "password_file": os.path.abspath(password_file)
                         if password_file else None},
            "anvil": None}
    _write_info(path, info)
    return info
