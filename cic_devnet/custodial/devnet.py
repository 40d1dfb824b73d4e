"""The custodial engine as a devnet service: its signer, database, passphrase and workers.

:func:`start_engine` gives the engine its own signing key (funded with gas, made a writer of
the AccountsIndex and the faucet by the deployer), prepares the database (created if missing)
and schema, writes the passphrase file, starts the workers and waits until one answers. The
``custodial`` section of devnet.json it returns tells clients where the engine is.
:func:`start_embedded` prepares the same and runs the engine in this process instead
(:mod:`.embedded`: SQLite ``DIR/custodial.db``, an in-memory broker), for a machine without
PostgreSQL and Redis; :func:`spooled` turns those options into ones of a single worker
process on the same SQLite file whose broker and replies are files (a spool directory), for
such an engine that must outlive the process starting it.

Its own key, not the deployer's: the syncer signs with the deployer from this machine (a
file-lock nonce allocator) while the engine allocates nonces in PostgreSQL; two allocators on
one key would race each other.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import eth_keyfile

from cic_devnet._pgschemas import record as record_schema
from cic_seeding.chain.client import ChainClient
from cic_seeding.chain.registry import ACCOUNTS_INDEX, FAUCET, CicNetwork
from cic_seeding.chain.signer import Signer, read_password
from cic_seeding.chain.tx import Call
from cic_seeding.config import Settings
from cic_seeding.custodial import DEFAULT_BROKER, redact
from cic_seeding.custodial.local import EMBEDDED_BROKER, is_embedded
from cic_seeding.custodial.spool import make_spool
from cic_seeding.datadir.store import atomic_write
from cic_seeding.errors import UsageError

from .process import WorkerProcess, start_workers, stop_worker_pid, wait_ready, worker_env
from .storage import SQLITE_PREFIX, ensure_database
from .stores import open_storage

if TYPE_CHECKING:
    from .embedded import EmbeddedEngine

log = logging.getLogger(__name__)

SIGNER_KEYFILE, SIGNER_PASSWORD, PASSPHRASE_FILE = (
    "custodial-signer.json", "custodial-signer.pw", "custodial.passphrase")
DEFAULT_DB = "postgresql://postgres@127.0.0.1:5432/cic_custodial"
#: The database of an embedded engine, in the devnet directory.
SQLITE_FILE = "custodial.db"
#: The spool directory (broker and replies as files) of an engine on SQLite that runs as a
#: process of its own (:func:`spooled`), in the devnet directory.
SPOOL_DIR = "custodial-spool"
#: Gas money the deployer gives the engine's signer (anvil's dev accounts hold 10,000 ETH).
SIGNER_FUNDS = 1000 * 10**18


@dataclass(frozen=True)
class EngineOptions:
    """Where the engine keeps its state; None picks the devnet default (fresh schema and
    queue on local PostgreSQL and Redis). ``embedded``: the engine runs in this process
    (:func:`start_embedded`), on SQLite ``DIR/custodial.db`` unless ``db_url`` says otherwise,
    with an in-memory broker (``broker_url`` and ``workers`` do not apply)."""

    broker_url: str | None = None
    db_url: str | None = None
    schema: str | None = None
    queue: str | None = None
    passphrase: str | None = None
    workers: int = 1
    concurrency: int = 4
    embedded: bool = False

    @classmethod
    def from_settings(cls, settings: Settings, *, workers: int = 1,
                      embedded: bool | None = None) -> EngineOptions:
        """The options ``settings`` give (custodial_* keys). ``embedded`` None: embedded when
        neither custodial_broker_url nor custodial_db_url is set (no Redis or PostgreSQL
        configured), or the broker is ``memory://``."""
        if workers < 1:
            raise UsageError(f"custodial workers must be at least 1, got {workers}")
        passphrase = None
        if settings.custodial_passphrase or settings.custodial_passphrase_file:
            passphrase = read_password(settings.custodial_passphrase,
                                       settings.custodial_passphrase_file,
                                       "custodial passphrase")
        broker = settings.custodial_broker_url
        if embedded is None:
            embedded = bool(broker and is_embedded(broker)) or not (
                broker or settings.custodial_db_url)
        return cls(broker_url=settings.custodial_broker_url, db_url=settings.custodial_db_url,
                   schema=settings.custodial_db_schema, queue=settings.custodial_queue,
                   passphrase=passphrase, workers=workers, embedded=embedded)


def _signer(directory: Path) -> Signer:
    keyfile, pw = directory / SIGNER_KEYFILE, directory / SIGNER_PASSWORD
    if keyfile.is_file():
        return Signer.from_keyfile(keyfile, read_password(None, str(pw), "custodial signer"))
    key = secrets.token_bytes(32)
    password = secrets.token_hex(16)
    doc = eth_keyfile.create_keyfile_json(key, password.encode(), kdf="scrypt",
                                          iterations=2**12)
    atomic_write(pw, password.encode(), 0o600)
    atomic_write(keyfile, json.dumps(doc).encode(), 0o600)
    return Signer.from_key(key)


def provision_signer(directory: Path, network: CicNetwork) -> Signer:
    """The engine's key (made once per devnet directory), funded and given writer rights."""
    signer = _signer(directory)
    client = network.client
    (wei,) = client.native_balances([signer.address])
    if wei < SIGNER_FUNDS // 2:
        client.transact(Call(signer.address, b"", value=SIGNER_FUNDS, gas=21_000),
                        "funding the custodial signer")
    for contract, what in ((network.accounts_index, "AccountsIndex"),
                           (network.faucet, "ERC20Faucet")):
        if not network.is_writer(contract, signer.address):
            abi = ACCOUNTS_INDEX if what == "AccountsIndex" else FAUCET
            client.transact(Call(contract, abi.encode("addWriter", signer.address),
                                 gas=100_000), f"{what}.addWriter(custodial signer)")
    return signer


@dataclass(frozen=True)
class EngineSetup:
    """A prepared engine: the workers' environment and devnet.json's section (no workers)."""

    env: dict[str, str]
    info: dict[str, Any]

    @property
    def broker_url(self) -> str:
        return str(self.info["broker_url"])

    @property
    def queue(self) -> str:
        return str(self.info["queue"])


def prepare_engine(directory: Path, deployer: ChainClient, registry: str,
                   options: EngineOptions | None = None, *,
                   previous: dict[str, Any] | None = None,
                   chain_spec: str | None = None) -> EngineSetup:
    """Everything but the workers: signer, database and schema, passphrase file, environment.

    ``previous`` (the section of a reloaded devnet) keeps its schema, queue and passphrase
    (and its database, unless the engine moves between workers and embedded).
    """
    options = options or EngineOptions()
    previous = previous or {}
    if bool(previous.get("embedded")) != options.embedded:
        previous = {}  # the engine moves between workers and this process: new state
    tag = uuid.uuid4().hex[:10]
    if options.embedded:
        db_url = (options.db_url or previous.get("db_url")
                  or f"{SQLITE_PREFIX}{directory / SQLITE_FILE}")
        broker = EMBEDDED_BROKER
    else:
        db_url = options.db_url or previous.get("db_url") or DEFAULT_DB
        broker = options.broker_url or previous.get("broker_url") or DEFAULT_BROKER
        if is_embedded(broker):
            raise UsageError(f"the custodial broker {broker} serves an engine embedded in one "
                             "process; worker processes need Redis",
                             hint="set custodial_broker_url to a redis:// URL, or run the "
                             "engine embedded (`cic-seed demo --custodial`)")
    schema = options.schema or previous.get("db_schema") or (
        None if db_url.startswith(SQLITE_PREFIX) else f"devnet_{tag}")
    if schema == f"devnet_{tag}":  # ours, made now: `devnet down` drops it
        record_schema(directory, db_url, schema, "custodial engine")
    queue = options.queue or previous.get("queue") or f"cic_custodial_{tag}"
    signer = provision_signer(directory, CicNetwork(deployer, registry))
    if options.passphrase or not (directory / PASSPHRASE_FILE).is_file():
        atomic_write(directory / PASSPHRASE_FILE,
                     (options.passphrase or secrets.token_urlsafe(24)).encode(), 0o600)
    if options.db_url is None and db_url == DEFAULT_DB:
        ensure_database(db_url)
    open_storage(db_url, schema).close()  # schema now, a clear error if the database is wrong
    env = worker_env({  # the chain explicitly: devnet.json is written after the engine starts
        "CIC_RPC_URL": deployer.rpc.url, "CIC_REGISTRY_ADDRESS": registry,
        "CIC_CHAIN_SPEC": chain_spec, "CIC_CUSTODIAL_BROKER_URL": broker,
        "CIC_CUSTODIAL_QUEUE": queue, "CIC_CUSTODIAL_DB_URL": db_url,
        "CIC_CUSTODIAL_DB_SCHEMA": schema,
        "CIC_CUSTODIAL_PASSPHRASE_FILE": str(directory / PASSPHRASE_FILE),
        "CIC_CUSTODIAL_KEYFILE": str(directory / SIGNER_KEYFILE),
        "CIC_CUSTODIAL_KEYFILE_PASSWORD_FILE": str(directory / SIGNER_PASSWORD)})
    info = {"broker_url": broker, "queue": queue, "db_url": redact(db_url),
            "db_schema": schema, "passphrase_file": PASSPHRASE_FILE,
            "signer": {"address": signer.address, "keyfile": SIGNER_KEYFILE,
                       "password_file": SIGNER_PASSWORD}}
    if options.embedded:
        info["embedded"] = True
    return EngineSetup(env, info)


def start_engine(directory: Path, deployer: ChainClient, registry: str,
                 options: EngineOptions | None = None, *, previous: dict[str, Any] | None = None,
                 chain_spec: str | None = None, detach: bool = False,
                 timeout: float = 60.0) -> dict[str, Any]:
    """Prepare the engine of the devnet in ``directory``, start its workers and wait until
    one answers; returns devnet.json's ``custodial`` section."""
    options = options or EngineOptions()
    setup = prepare_engine(directory, deployer, registry, options, previous=previous,
                           chain_spec=chain_spec)
    workers = start_workers(setup.env, count=options.workers, concurrency=options.concurrency,
                            log_dir=directory, detach=detach)
    try:
        wait_ready(workers, setup.broker_url, setup.queue, timeout)
    except BaseException:
        for w in workers:
            w.stop()
        raise
    log.info("custodial engine: %d workers on queue %s (%s, schema %s)", len(workers),
             setup.queue, redact(setup.broker_url), setup.info["db_schema"])
    return {**setup.info, "workers": [_worker_info(w) for w in workers]}


def start_embedded(directory: Path, deployer: ChainClient, registry: str,
                   options: EngineOptions | None = None, *,
                   previous: dict[str, Any] | None = None, chain_spec: str | None = None,
                   timeout: float = 30.0) -> EmbeddedEngine:
    """Prepare the engine of the devnet in ``directory`` and run it in this process until
    :meth:`~.embedded.EmbeddedEngine.stop`; its ``info`` is devnet.json's ``custodial``
    section."""
    from .embedded import EmbeddedEngine

    options = dataclasses.replace(options or EngineOptions(), embedded=True)
    setup = prepare_engine(directory, deployer, registry, options, previous=previous,
                           chain_spec=chain_spec)
    return EmbeddedEngine.start(setup.env, setup.info, concurrency=options.concurrency,
                                timeout=timeout)


def spooled(options: EngineOptions, directory: Path) -> EngineOptions:
    """``options`` of an engine without PostgreSQL and Redis (``embedded``) turned into those
    of one worker process that outlives this one: the same SQLite file, its broker and
    replies files in ``DIR/custodial-spool`` (:mod:`cic_seeding.custodial.spool`). One
    worker: SQLite serialises the writers of one machine anyway."""
    return dataclasses.replace(
        options, embedded=False, workers=1,
        db_url=options.db_url or f"{SQLITE_PREFIX}{directory / SQLITE_FILE}",
        broker_url=make_spool(directory / SPOOL_DIR))


def _worker_info(worker: WorkerProcess) -> dict[str, Any]:
    return {"pid": worker.pid, "name": worker.name, "log": worker.log_file}


def stop_engine(info: dict[str, Any], timeout: float = 10.0) -> bool:
    """Stop the workers ``info`` (devnet.json's section) names; True if any was running."""
    stopped = False
    for worker in info.get("workers") or []:
        if worker.get("pid"):
            stopped = stop_worker_pid(int(worker["pid"]), timeout) or stopped
            worker["pid"] = None
    return stopped
