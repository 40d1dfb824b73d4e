"""The one typed settings object and where each value came from.

Precedence, highest first: command-line flag > environment variable > config file > devnet
file > default. A fact a caller knows ranks just above the devnet file
(:meth:`Settings.with_fact`: the chain spec of the data directory's manifest). Every key is
declared once, in :class:`Settings`, with its environment variable and help text;
``cic-seed config show`` and the README's table are generated from these declarations.

A devnet directory (``devnet_dir``: ``--devnet DIR`` / ``CIC_DEVNET_DIR``) holds ``devnet.json``,
written by ``cic-seed devnet up``/``deploy``::

    {"rpc_url": ..., "chain_spec": ..., "chain_id": ..., "registry": ...,
     "deployer": {"address": ..., "keyfile": "deployer.json", "password_file": "deployer.pw"},
     "mining": "explicit" | "auto", "contracts": {"BatchFunder": ..., ...},
     "meta": {"url": ..., "token_file": "meta.token", ...},
     "custodial": {"broker_url": ..., "queue": ..., "db_url": ..., "db_schema": ...,
                   "passphrase_file": ..., "signer": {"keyfile": ..., "password_file": ...}},
     "ussd": {"url": ..., "service_code": ..., "db": ..., "schema": ...}}

This module is the only reader of that file: :func:`load_settings` reads it once and turns each
fact into the value of a setting (:data:`DEVNET_SETTINGS`), source ``devnet.json (DIR)``, for
every setting no flag, environment variable or config file gives. File names in it are
relative to DIR. A value that only makes sense with another one (the deployer's password file
with the deployer's keyfile, ...: :data:`DEVNET_COMPANIONS`) is taken only when that one came
from the devnet file too. ``batch_funder = "devnet"`` becomes the devnet's BatchFunder address.

The older CIC data-seeding scripts read a *config directory* of ini files (``[rpc]
provider = ...``), each key also given by an environment variable named ``SECTION_KEY``
(``RPC_PROVIDER``; behind ``$CONFINI_ENV_PREFIX_`` when that is set). Those keys keep working:
a directory given as the config file (``-c DIR``, ``--config DIR``, ``$CIC_CONFIG``) is read
in that layout, and the older environment names are read always; :data:`LEGACY_KEYS` and
:data:`LEGACY_COMPOSITES` map them onto settings. An older key ranks with its kind (a file
key with the config file, an environment name with the environment, below this toolkit's
own ``CIC_*`` name) and is named as its source (``env RPC_PROVIDER``, ``config/rpc.ini [rpc]
provider``). Keys this toolkit has no use for are accepted and listed in
:attr:`Settings.notes` (shown at ``-v``).
"""

from __future__ import annotations

import configparser
import dataclasses
import difflib
import json
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cic_seeding.errors import ConfigError
from cic_seeding.remote import DEFAULT_BREAKER_COOLDOWN, DEFAULT_BREAKER_THRESHOLD

DEFAULT_CONFIG_FILE = Path("config") / "cic-seed.toml"
#: The TOML file a config directory may hold besides older ini files.
CONFIG_DIR_TOML = "cic-seed.toml"
CONFIG_ENV = "CIC_CONFIG"
#: Environment variable whose value prefixes the older configuration's environment names.
LEGACY_PREFIX_ENV = "CONFINI_ENV_PREFIX"
SOURCE_DEFAULT = "default"
SOURCE_FLAG = "flag"
#: The file a devnet directory describes its devnet in.
DEVNET_FILE = "devnet.json"
#: ``batch_funder`` value that means "the devnet's BatchFunder".
BATCH_FUNDER_DEVNET = "devnet"
#: ``mining`` values.
MINING_EXPLICIT, MINING_AUTO, MINING_DETECT = "explicit", "auto", "detect"


def _key(default: Any, env: str, help: str, *, kind: type = str, secret: bool = False,
         choices: tuple[str, ...] = ()) -> Any:
    return field(default=default, metadata={"env": env, "help": help, "kind": kind,
                                            "secret": secret, "choices": choices})


#: Default of ``batch_size`` (the batch path registers more per batch unless it is set).
DEFAULT_BATCH_SIZE = 250


@dataclass(frozen=True)
class Settings:
    """Resolved configuration. Read attributes; ``sources[name]`` says where each came from."""

    data_dir: str = _key("out", "CIC_DATA_DIR",
                         "data directory written by generate, read by the rest")
    chain_spec: str = _key(
        "evm:byzantium:8996:bloxberg", "CIC_CHAIN_SPEC",
        "chain the users are generated for / imported into: engine:fork:network_id:common_name "
        "(-i; default: the data directory's manifest, else the devnet's)")
    devnet_dir: str | None = _key(
        None, "CIC_DEVNET_DIR",
        "devnet directory (--devnet): its devnet.json gives every chain and service setting "
        "that no flag, environment variable or config file gives (`cic-seed config show` "
        "marks them)")
    rpc_url: str | None = _key(
        None, "CIC_RPC_URL", "JSON-RPC endpoint of the EVM node (-p; default: the devnet's)")
    registry_address: str | None = _key(
        None, "CIC_REGISTRY_ADDRESS", "CIC registry contract (-r; default: the devnet's)")
    mining: str = _key(
        MINING_DETECT, "CIC_MINING",
        "how the node mines: explicit (only when asked, evm_mine: a devnet), auto (by itself) "
        "or detect (ask the node: automine off and no block interval means explicit; default, "
        "or the devnet's)",
        choices=(MINING_EXPLICIT, MINING_AUTO, MINING_DETECT))
    keyfile: str | None = _key(
        None, "CIC_KEYFILE", "v3 keyfile of the signer (-y; default: the devnet's deployer)")
    keyfile_password: str | None = _key(
        None, "CIC_KEYFILE_PASSWORD", "password of the signer keyfile", secret=True)
    keyfile_password_file: str | None = _key(
        None, "CIC_KEYFILE_PASSWORD_FILE",
        "file holding the signer keyfile password (default: the devnet deployer's, when the "
        "keyfile is the deployer's)")
    token_symbol: str | None = _key(
        None, "CIC_TOKEN_SYMBOL", "token to seed and verify (default: the registry's DefaultToken)")
    keystore_password: str = _key(
        "foo", "CIC_KEYSTORE_PASSWORD", "password of the user keyfiles written under keystore/",
        secret=True)
    keystore_kdf: str = _key(
        "light", "CIC_KEYSTORE_KDF",
        "user keyfile KDF: light (scrypt n=2^8) or production (n=2^18)")
    batch_size: int = _key(DEFAULT_BATCH_SIZE, "CIC_BATCH_SIZE",
                           "transactions sent per JSON-RPC batch", kind=int)
    workers: int = _key(0, "CIC_WORKERS", "worker processes for CPU work (0: one per core)",
                        kind=int)
    rpc_timeout: float = _key(30.0, "CIC_RPC_TIMEOUT", "seconds before one RPC request times out",
                              kind=float)
    rpc_retries: int = _key(5, "CIC_RPC_RETRIES", "retries of a transient RPC failure", kind=int)
    breaker_threshold: int = _key(
        DEFAULT_BREAKER_THRESHOLD, "CIC_BREAKER_THRESHOLD",
        "requests to one service (RPC node, metadata server, USSD gateway) that may fail in a "
        "row, each after its retries, before its circuit breaker opens and further calls fail "
        "at once (0: no breaker)", kind=int)
    breaker_cooldown: float = _key(
        DEFAULT_BREAKER_COOLDOWN, "CIC_BREAKER_COOLDOWN",
        "seconds an open circuit breaker fails calls at once before one probe request tries "
        "the service again", kind=float)
    confirmations: int = _key(0, "CIC_CONFIRMATIONS", "blocks the syncer stays behind the head",
                              kind=int)
    tx_resend_after: float = _key(
        10.0, "CIC_TX_RESEND_AFTER",
        "seconds a sent transaction may go without a receipt before the node is asked about it "
        "(lost: the same bytes are sent again; priced below the base fee: a fee bump)",
        kind=float)
    tx_max_resends: int = _key(
        5, "CIC_TX_MAX_RESENDS",
        "times one run sends the same transaction again before it gives it up (a rerun "
        "resumes it)", kind=int)
    tx_max_unmined: int = _key(
        500, "CIC_TX_MAX_UNMINED",
        "transactions of one signer a node that mines by itself holds unmined at once; more "
        "wait for it to mine (0: no limit)", kind=int)
    tx_stall: float = _key(
        180.0, "CIC_TX_STALL",
        "seconds without any transaction mined before a run gives up waiting (a rerun "
        "resumes)", kind=float)
    gas_gift: int = _key(10**16, "CIC_GAS_GIFT", "wei sent to each new user for gas (0: none)",
                         kind=int)
    batch_funder: str | None = _key(
        None, "CIC_BATCH_FUNDER",
        "opt-in batch path: BatchFunder address ('devnet': the devnet's) that registers, funds "
        "and pays many sovereign users per transaction (default: one transaction each)")
    state_url: str | None = _key(
        None, "CIC_STATE_URL",
        "per-user import state store: sqlite path or postgresql:// URL "
        "(default: DATA_DIR/state.db)")
    import_executor: str = _key(
        "local", "CIC_IMPORT_EXECUTOR",
        "where the eth importer's batches run: local (this process) or celery (import workers "
        "on any number of machines, `cic-seed import-worker`)")
    import_broker_url: str = _key(
        "redis://127.0.0.1:6379/0", "CIC_IMPORT_BROKER_URL",
        "Redis URL of the celery executor: broker of the batch tasks and their replies")
    import_queue: str = _key("cic_seeding_import", "CIC_IMPORT_QUEUE",
                             "Celery queue the import workers consume (celery executor)")
    import_in_flight: int = _key(
        8, "CIC_IMPORT_IN_FLIGHT",
        "batches the celery executor keeps queued or running at once (about 2 per worker "
        "thread)", kind=int)
    import_task_timeout: float = _key(
        300.0, "CIC_IMPORT_TASK_TIMEOUT",
        "seconds one batch task may take: the dispatcher then sends it again, a worker's "
        "broker gives an unacknowledged task to another worker (celery executor)", kind=float)
    import_worker_dir: str | None = _key(
        None, "CIC_IMPORT_WORKER_DIR",
        "worker side: directory of the import worker's own signing key, made on first start "
        "(default: $XDG_STATE_HOME/cic-seeding/import-worker)")
    meta_url: str | None = _key(
        None, "CIC_META_URL",
        "metadata server URL (cic_meta importer, metadata checks; default: the devnet's)")
    meta_token: str | None = _key(
        None, "CIC_META_TOKEN", "bearer token for metadata server writes", secret=True)
    meta_token_file: str | None = _key(
        None, "CIC_META_TOKEN_FILE",
        "file holding the metadata server write token (default: the devnet's, when the URL is "
        "the devnet's)")
    meta_concurrency: int = _key(16, "CIC_META_CONCURRENCY",
                                 "metadata write requests in flight (a document each, or a "
                                 "batch of them)", kind=int)
    meta_batch: int = _key(
        100, "CIC_META_BATCH",
        "most metadata documents in one write request when the server takes batches (the "
        "devnet's server does; others get one PUT per document); 0: one PUT per document",
        kind=int)
    meta_retries: int = _key(5, "CIC_META_RETRIES",
                             "retries of a transient metadata server failure", kind=int)
    custodial_broker_url: str | None = _key(
        None, "CIC_CUSTODIAL_BROKER_URL",
        "Redis URL of the custodial engine: Celery broker, results and callbacks (default: "
        "the devnet's, else redis://127.0.0.1:6379/0; memory://: an engine embedded in this "
        "process, as `cic-seed demo --custodial` runs it; filesystem://localhost/DIR: an "
        "engine on SQLite in a process of its own, its broker and replies files in DIR, as "
        "`cic-seed demo --custodial --keep` runs it)")
    custodial_queue: str | None = _key(
        None, "CIC_CUSTODIAL_QUEUE",
        "Celery queue the custodial engine's workers consume (default: the devnet's, else "
        "cic_custodial)")
    custodial_timeout: float = _key(
        120.0, "CIC_CUSTODIAL_TIMEOUT",
        "seconds to wait for the custodial engine's reply to one request", kind=float)
    custodial_db_url: str | None = _key(
        None, "CIC_CUSTODIAL_DB_URL",
        "engine side: PostgreSQL URL of the custodial engine's keys and transaction queue "
        "(sqlite:///PATH: one file, for an engine embedded in one process or running as one "
        "process of its own; default: the devnet's, whose password is masked)")
    custodial_db_schema: str | None = _key(
        None, "CIC_CUSTODIAL_DB_SCHEMA",
        "engine side: PostgreSQL schema of the custodial engine (default: the devnet's)")
    custodial_passphrase: str | None = _key(
        None, "CIC_CUSTODIAL_PASSPHRASE",
        "engine side: passphrase the custodial keys are encrypted with", secret=True)
    custodial_passphrase_file: str | None = _key(
        None, "CIC_CUSTODIAL_PASSPHRASE_FILE",
        "engine side: file holding the custodial passphrase (default: the devnet's)")
    custodial_keyfile: str | None = _key(
        None, "CIC_CUSTODIAL_KEYFILE",
        "engine side: v3 keyfile of the engine's signer (default: the devnet's)")
    custodial_keyfile_password_file: str | None = _key(
        None, "CIC_CUSTODIAL_KEYFILE_PASSWORD_FILE",
        "engine side: file holding the password of the engine signer's keyfile (default: "
        "the devnet's, when the keyfile is the devnet's)")
    ussd_url: str | None = _key(
        None, "CIC_USSD_URL", "USSD gateway URL (cic_ussd importer, ussd checks; default: the "
        "devnet's)")
    ussd_service_code: str | None = _key(
        None, "CIC_USSD_SERVICE_CODE", "USSD service code sessions dial (default: the devnet's, "
        "else *483*46#)")
    ussd_max_wait: float = _key(
        120.0, "CIC_USSD_MAX_WAIT",
        "seconds the cic_ussd importer waits for a registration's address (then fails the "
        "user; a rerun resumes)", kind=float)
    ussd_concurrency: int = _key(16, "CIC_USSD_CONCURRENCY",
                                 "USSD sessions the cic_ussd importer keeps in flight", kind=int)
    ussd_db_url: str | None = _key(
        None, "CIC_USSD_DB_URL", "PostgreSQL URL of the USSD gateway's accounts (gateway side, "
        "ussd-pins/ussd-data; default: the devnet's)")
    ussd_db_schema: str | None = _key(
        None, "CIC_USSD_DB_SCHEMA", "PostgreSQL schema of the USSD gateway's accounts "
        "(default: the devnet's, when the URL is the devnet's)")
    pins_dir: str | None = _key(
        None, "CIC_PINS_DIR", "directory of pins.csv: create_import_pins.py writes it, "
        "ussd-pins reads it (default: the data directory)")
    cache_provider: str | None = _key(
        None, "CIC_CACHE_PROVIDER", "cic-cache URL the older verify checked (--cache-provider, "
        "CACHE_PROVIDER): accepted, and named in the verify report as not checked (this "
        "toolkit has no cache check)")
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    #: The devnet file read for ``devnet_dir`` (None: none read), kept so that :meth:`replace`
    #: can apply it again without reading it again.
    devnet_file: DevnetFile | None = field(default=None, compare=False, repr=False)
    #: What resolving the settings noticed that a user may want to know (older keys this
    #: toolkit does not use, ...): the CLI prints them at ``-v``.
    notes: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def source_of(self, name: str) -> str:
        return self.sources.get(name, SOURCE_DEFAULT)

    def from_devnet(self, name: str) -> bool:
        """True if setting ``name`` has its value from the devnet file."""
        return self.devnet_file is not None and self.source_of(name) == self.devnet_file.source

    @property
    def devnet_deployer_signs(self) -> bool:
        """The registry and the signer's keyfile both come from the devnet file: the signer is
        the devnet's deployer, owner of every contract, so the batch path may grant the rights
        it needs itself instead of asking an owner."""
        return self.from_devnet("registry_address") and self.from_devnet("keyfile")

    def secrets(self) -> list[str]:
        """The secret values in force, so logging can redact them."""
        return [
            str(getattr(self, f.name)) for f in settings_fields()
            if f.metadata["secret"] and getattr(self, f.name)
        ]

    def with_fact(self, name: str, value: Any, source: str) -> Settings:
        """A copy with ``value`` for setting ``name``, from ``source``, unless a flag, an
        environment variable or a config file gives the setting: a fact that a caller knows
        (the data directory's manifest knows the chain its users were made for) ranks above
        the devnet file and the default, below everything a user says."""
        current = self.source_of(name)
        if current != SOURCE_DEFAULT and not self.from_devnet(name):
            return self
        return _apply(self, {name: value}, source)

    def replace(self, **flags: Any) -> Settings:
        """A copy with ``flags`` (those not None) applied at flag precedence.

        With a devnet (read before, or ``devnet_dir`` among the flags) its values are applied
        again below the new flags: a flag overrides the devnet's value (and its companions).
        """
        given = {k: v for k, v in flags.items() if v is not None}
        if self.devnet_file is None and "devnet_dir" not in given:
            return _apply(self, given, SOURCE_FLAG)
        return _with_devnet(_apply(_without_devnet(self), given, SOURCE_FLAG), self.devnet_file)


def settings_fields() -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(Settings) if "env" in f.metadata]


def _coerce(f: dataclasses.Field[Any], raw: Any, where: str) -> Any:
    kind = f.metadata["kind"]
    if raw is None:
        return None
    try:
        if kind is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError(raw)
            return int(raw)
        if kind is float:
            return float(raw)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{where}: {f.name} must be {'an integer' if kind is int else 'a number'}, got {raw!r}"
        ) from None
    value = str(raw)
    choices = f.metadata["choices"]
    if choices and value not in choices:
        raise ConfigError(f"{where}: {f.name} must be one of {', '.join(choices)}, got {raw!r}")
    return value


def _apply(base: Settings, values: Mapping[str, Any], source: str) -> Settings:
    by_name = {f.name: f for f in settings_fields()}
    changes: dict[str, Any] = {}
    sources = dict(base.sources)
    for name, raw in values.items():
        if name not in by_name:
            raise ConfigError(f"unknown setting {name!r}{_near(name, by_name)}")
        changes[name] = _coerce(by_name[name], raw, source)
        sources[name] = source
    return dataclasses.replace(base, sources=sources, **changes)


def _near(name: str, names: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(names), n=3)
    return f"; did you mean {', '.join(close)}?" if close else f"; valid keys: {', '.join(names)}"


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    by_name = {f.name: f for f in settings_fields()}
    for key in data:
        if key not in by_name:
            raise ConfigError(f"config file {path}: unknown key {key!r}{_near(key, by_name)}")
    return data


#: setting <- where devnet.json says it (keys, outermost first), and whether it names a file
#: (relative to the devnet directory).
DEVNET_SETTINGS: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("rpc_url", ("rpc_url",), False),
    ("registry_address", ("registry",), False),
    ("chain_spec", ("chain_spec",), False),
    ("mining", ("mining",), False),
    ("keyfile", ("deployer", "keyfile"), True),
    ("keyfile_password_file", ("deployer", "password_file"), True),
    ("meta_url", ("meta", "url"), False),
    ("meta_token_file", ("meta", "token_file"), True),
    ("custodial_broker_url", ("custodial", "broker_url"), False),
    ("custodial_queue", ("custodial", "queue"), False),
    ("custodial_db_url", ("custodial", "db_url"), False),
    ("custodial_db_schema", ("custodial", "db_schema"), False),
    ("custodial_passphrase_file", ("custodial", "passphrase_file"), True),
    ("custodial_keyfile", ("custodial", "signer", "keyfile"), True),
    ("custodial_keyfile_password_file", ("custodial", "signer", "password_file"), True),
    ("ussd_url", ("ussd", "url"), False),
    ("ussd_service_code", ("ussd", "service_code"), False),
    ("ussd_db_url", ("ussd", "db"), False),
    ("ussd_db_schema", ("ussd", "schema"), False),
)
#: A devnet value that belongs with another setting's: taken only when that setting's value
#: comes from the devnet file too (the deployer's password file is no use with another keyfile).
DEVNET_COMPANIONS = {
    "keyfile_password_file": "keyfile",
    "meta_token_file": "meta_url",
    "custodial_keyfile_password_file": "custodial_keyfile",
    "ussd_service_code": "ussd_url",
    "ussd_db_schema": "ussd_db_url",
}


@dataclass(frozen=True)
class DevnetFile:
    """What one devnet file says, as settings values (file names resolved)."""

    directory: str
    values: Mapping[str, str]
    batch_funder: str | None = None

    @property
    def source(self) -> str:
        """The source of the settings it gives, as ``config show`` prints it."""
        return f"{DEVNET_FILE} ({self.directory})"


def read_devnet(directory: str | Path) -> dict[str, Any]:
    """The parsed devnet file of ``directory``; a one-line ConfigError if it is missing or not
    a devnet file."""
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


def _devnet_file(directory: str) -> DevnetFile:
    doc = read_devnet(directory)
    values: dict[str, str] = {}
    for name, keys, is_file in DEVNET_SETTINGS:
        value: Any = doc
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None or value == "" or isinstance(value, (dict, list)):
            continue
        values[name] = str(Path(directory) / str(value)) if is_file else str(value)
    if values.get("mining") not in (MINING_EXPLICIT, MINING_AUTO):
        values.pop("mining", None)
    contracts = doc.get("contracts")
    funder = contracts.get("BatchFunder") if isinstance(contracts, dict) else None
    return DevnetFile(directory, values, str(funder) if funder else None)


def _with_devnet(settings: Settings, known: DevnetFile | None) -> Settings:
    """``settings`` with the devnet file of its ``devnet_dir`` (``known`` if it is that one's)
    below every value given otherwise."""
    if not settings.devnet_dir:
        return dataclasses.replace(settings, devnet_file=None)
    devnet = (known if known is not None and known.directory == settings.devnet_dir
              else _devnet_file(settings.devnet_dir))
    free = {name for name in devnet.values if settings.source_of(name) == SOURCE_DEFAULT}
    settings = _apply(settings, {name: value for name, value in devnet.values.items()
                                 if name in free and DEVNET_COMPANIONS.get(name, name) in free},
                      devnet.source)
    if (settings.batch_funder or "").strip().lower() == BATCH_FUNDER_DEVNET:
        if not devnet.batch_funder:
            raise ConfigError(f"the devnet in {devnet.directory} has no BatchFunder",
                              hint="redeploy it with this version (`cic-seed devnet up`)")
        sources = {**settings.sources, "batch_funder": _devnet_funder_source(
            settings.source_of("batch_funder"), devnet)}
        settings = dataclasses.replace(settings, batch_funder=devnet.batch_funder,
                                       sources=sources)
    return dataclasses.replace(settings, devnet_file=devnet)


def _devnet_funder_source(source: str, devnet: DevnetFile) -> str:
    return f"{source} '{BATCH_FUNDER_DEVNET}' -> {devnet.source}"


def _without_devnet(settings: Settings) -> Settings:
    """``settings`` as they were before :func:`_with_devnet`."""
    devnet = settings.devnet_file
    if devnet is None:
        return settings
    defaults = {f.name: f.default for f in settings_fields()}
    changes: dict[str, Any] = {}
    sources = dict(settings.sources)
    suffix = _devnet_funder_source("", devnet)
    for name, source in settings.sources.items():
        if source == devnet.source:
            changes[name] = defaults[name]
            del sources[name]
        elif name == "batch_funder" and source.endswith(suffix):
            changes[name] = BATCH_FUNDER_DEVNET
            sources[name] = source.removesuffix(suffix)
    return dataclasses.replace(settings, sources=sources, devnet_file=None, **changes)


def load_settings(
    flags: Mapping[str, Any] | None = None,
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    devnet: bool = True,
    env_prefix: str | None = None,
) -> Settings:
    """Resolve every setting: flags > environment > config file > devnet file > defaults.

    ``config_file`` defaults to ``$CIC_CONFIG``, else ``config/cic-seed.toml`` when it exists;
    a directory is read in the older layout (its ``*.ini`` files, and its ``cic-seed.toml``
    above them). The older environment names (``RPC_PROVIDER`` ...) are read behind
    ``env_prefix`` (default ``$CONFINI_ENV_PREFIX``), each below this toolkit's own name for
    the same setting. The devnet file is that of ``devnet_dir`` (from any source);
    ``devnet=False`` leaves it unread, for the commands that make a devnet rather than use one.
    """
    env = os.environ if environ is None else environ
    prefix = env_prefix if env_prefix is not None else env.get(LEGACY_PREFIX_ENV)
    settings = Settings()
    path = config_file or env.get(CONFIG_ENV)
    toml: Path | None = None
    older: dict[str, OlderValue] = {}
    notes: list[str] = []
    if path and Path(path).is_dir():
        toml, older = _read_config_dir(Path(path))
    elif path:
        toml = Path(path)
    elif DEFAULT_CONFIG_FILE.is_file():
        toml = DEFAULT_CONFIG_FILE
    older.update(_older_env(env, prefix or None, older))
    mapped = _legacy_settings(older, notes)
    for name, m in mapped.items():
        if not m.from_env:
            settings = _apply(settings, {name: m.value}, m.source)
    if toml is not None:
        settings = _apply(settings, _read_config_file(toml), str(toml))
    for name, m in mapped.items():
        if m.from_env:
            settings = _apply(settings, {name: m.value}, m.source)
    named = [f"{name} ({m.source})" for name, m in mapped.items() if m.from_env]
    if named:  # generic names (CHAIN_SPEC, DATABASE_HOST) may be set for something else
        notes.append(f"settings from the older environment names: {', '.join(named)}")
    for f in settings_fields():
        var = f.metadata["env"]
        if var in env and env[var] != "":
            settings = _apply(settings, {f.name: env[var]}, f"env {var}")
    settings = _apply(settings, {k: v for k, v in (flags or {}).items() if v is not None},
                      SOURCE_FLAG)
    settings = dataclasses.replace(settings, notes=tuple(notes))
    return _with_devnet(settings, None) if devnet else settings


# -- the older configuration: ini directories and SECTION_KEY environment names -------------

@dataclass(frozen=True)
class OlderValue:
    """One key of the older configuration: its value and where it was given (``env NAME`` or
    ``FILE [section] key``)."""

    value: str
    where: str
    from_env: bool = False


#: Older key (``SECTION_KEY``) -> the setting it gives. Where several give one setting, the
#: first with a value wins (then the composites of :data:`LEGACY_COMPOSITES`, in order).
LEGACY_KEYS: tuple[tuple[str, str], ...] = (
    ("RPC_PROVIDER", "rpc_url"),
    ("CHAIN_SPEC", "chain_spec"),
    ("CIC_REGISTRY_ADDRESS", "registry_address"),
    ("TOKEN_SYMBOL", "token_symbol"),
    ("META_PROVIDER", "meta_url"),  # the older verify's name
    ("META_URL", "meta_url"),  # the older metadata import's name
    ("USSD_PROVIDER", "ussd_url"),
    ("USSD_SERVICE_CODE", "ussd_service_code"),
    ("CELERY_BROKER_URL", "custodial_broker_url"),
    # the engine's results travel on its broker: a result URL is its broker when none is named
    ("CELERY_RESULT_URL", "custodial_broker_url"),
    ("CELERY_QUEUE", "custodial_queue"),
    ("ETH_GAS_AMOUNT", "gas_gift"),
    ("CACHE_PROVIDER", "cache_provider"),
)


def _first_code(value: str) -> str:
    """The first of a comma-separated list of USSD service codes (the older verify dialled it)."""
    return value.split(",")[0].strip()


#: How a value of an older key becomes the setting's (default: as it is).
LEGACY_TRANSFORMS: dict[str, Callable[[str], str]] = {"USSD_SERVICE_CODE": _first_code}


def _redis_url(parts: Mapping[str, str]) -> str | None:
    host = parts.get("REDIS_HOST")
    if not host:
        return None
    return f"redis://{host}:{parts.get('REDIS_PORT') or 6379}/{parts.get('REDIS_DB') or 0}"


def _database_url(parts: Mapping[str, str]) -> str | None:
    from urllib.parse import quote

    if not (parts.get("DATABASE_HOST") or parts.get("DATABASE_NAME")):
        return None
    engine = (parts.get("DATABASE_ENGINE") or "postgresql").lower()
    if not engine.startswith("postgres"):
        raise ConfigError(f"DATABASE_ENGINE {engine!r}: the USSD accounts database must be "
                          "PostgreSQL", hint="set DATABASE_ENGINE=postgresql, or ussd_db_url")
    auth = quote(parts.get("DATABASE_USER") or "", safe="")
    if auth and parts.get("DATABASE_PASSWORD"):
        auth += ":" + quote(parts["DATABASE_PASSWORD"], safe="")
    host = parts.get("DATABASE_HOST") or "localhost"
    return (f"postgresql://{auth + '@' if auth else ''}{host}:"
            f"{parts.get('DATABASE_PORT') or 5432}/{parts.get('DATABASE_NAME') or ''}")


def _meta_host_url(parts: Mapping[str, str]) -> str | None:
    host = parts.get("META_HOST")
    if not host:
        return None
    scheme = "https" if (parts.get("META_SSL") or "").lower() in ("1", "true", "on") else "http"
    port = parts.get("META_PORT")
    return f"{scheme}://{host}:{port}" if port else f"{scheme}://{host}"


#: A setting composed from several older keys: (setting, keys, how).
LEGACY_COMPOSITES: tuple[tuple[str, tuple[str, ...],
                               Callable[[Mapping[str, str]], str | None]], ...] = (
    ("custodial_broker_url", ("REDIS_HOST", "REDIS_PORT", "REDIS_DB"), _redis_url),
    ("ussd_db_url", ("DATABASE_HOST", "DATABASE_PORT", "DATABASE_NAME", "DATABASE_USER",
                     "DATABASE_PASSWORD", "DATABASE_ENGINE"), _database_url),
    ("meta_url", ("META_HOST", "META_PORT", "META_SSL"), _meta_host_url),
)

#: Older keys (or ``PREFIX_`` families) this toolkit has no use for, and why.
LEGACY_UNUSED: tuple[tuple[str, str], ...] = (
    ("CHAIN_SPEC_SOURCE", "the data directory's manifest names the chain its users were made "
     "for"),
    ("DATABASE_DRIVER", "the USSD accounts database is PostgreSQL through psycopg"),
    ("DATABASE_DEBUG", "use -vv"),
    ("DATABASE_POOL_SIZE", "pools are sized from the concurrency settings"),
    ("PGP_", "the metadata server takes a bearer token (CIC_META_TOKEN), not PGP signatures"),
    ("TAG_", "tags are chosen when the users are generated (create_import_users.py --tag)"),
    ("TRAFFIC_", "traffic replays the data directory's transactions.csv (cic-seed traffic)"),
    ("APP_", "settings of the older HTTP services, not of seeding"),
    ("USSD_MENU_FILE", "the USSD gateway's menus are its own"),
    ("USSD_USER", "the USSD gateway takes no basic auth"),
    ("USSD_PASS", "the USSD gateway takes no basic auth"),
    ("SYNCER_", "the syncer's pace is set by sync --poll"),
)


def legacy_names() -> list[str]:
    """Every older key read from the environment (without a prefix)."""
    names = [k for k, _ in LEGACY_KEYS]
    names += [k for _, keys, _ in LEGACY_COMPOSITES for k in keys]
    return list(dict.fromkeys(names))


def _read_config_dir(path: Path) -> tuple[Path | None, dict[str, OlderValue]]:
    """``(its cic-seed.toml or None, its older keys)`` of a config directory."""
    toml = path / CONFIG_DIR_TOML
    try:
        inis = sorted(p for p in path.iterdir() if p.suffix == ".ini" and p.is_file())
    except OSError as exc:
        raise ConfigError(f"config directory {path} cannot be read: {exc.strerror}") from None
    if not inis and not toml.is_file():
        raise ConfigError(f"config directory {path} holds neither *.ini files (the older "
                          f"layout) nor {CONFIG_DIR_TOML}",
                          hint="give a config directory of the older data-seeding scripts, or "
                          "a TOML file")
    older: dict[str, OlderValue] = {}
    for ini in inis:
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            parser.read_string(ini.read_text(encoding="utf-8"), source=str(ini))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {ini} cannot be read: {exc}") from None
        except configparser.Error as exc:
            raise ConfigError(f"config file {ini} is not an ini file: "
                              f"{' '.join(str(exc).split())}") from None
        for section in parser.sections():
            for key, value in parser.items(section):
                if value.strip() == "":
                    continue  # an empty key is no value (as the older scripts read it)
                older[f"{section.upper()}_{key.upper()}"] = OlderValue(
                    value.strip(), f"{ini} [{section}] {key}")
    return (toml if toml.is_file() else None), older


def _older_env(env: Mapping[str, str], prefix: str | None,
               older: Mapping[str, OlderValue]) -> dict[str, OlderValue]:
    """The older keys the environment gives (``PREFIX_SECTION_KEY`` with a prefix): those
    this toolkit maps, and any key of the config directory, as the older scripts read them."""
    own = {f.metadata["env"] for f in settings_fields()}
    out = {}
    for key in dict.fromkeys([*legacy_names(), *older]):
        var = f"{prefix}_{key}" if prefix else key
        if var in own:
            continue  # this toolkit's own name for the setting (CIC_REGISTRY_ADDRESS)
        value = env.get(var, "")
        if value != "":
            out[key] = OlderValue(value, f"env {var}", from_env=True)
    return out


def _where(parts: list[OlderValue]) -> str:
    """``env A, B`` / ``FILE [s] a, b``: the places of ``parts``, each place named once."""
    out: list[str] = []
    last = ""
    for p in parts:
        place, _, name = p.where.rpartition(" ")
        out.append(name if place == last else p.where)
        last = place
    return ", ".join(out)


@dataclass(frozen=True)
class _Mapped:
    value: str
    source: str
    from_env: bool


def _legacy_settings(older: Mapping[str, OlderValue], notes: list[str]) -> dict[str, _Mapped]:
    """The settings the older keys give (their preferred key each); adds to ``notes`` the
    keys that give nothing and the keys another key of the same setting shadows."""
    candidates: dict[str, list[tuple[str, _Mapped]]] = {}
    used: set[str] = set()
    for key, setting in LEGACY_KEYS:
        got = older.get(key)
        if got is not None:
            value = LEGACY_TRANSFORMS.get(key, str)(got.value)
            candidates.setdefault(setting, []).append(
                (key, _Mapped(value, got.where, got.from_env)))
            used.add(key)
    for setting, keys, compose in LEGACY_COMPOSITES:
        parts = [older[k] for k in keys if k in older]
        composed = compose({k: older[k].value for k in keys if k in older}) if parts else None
        used.update(k for k in keys if k in older)
        if composed is not None:
            candidates.setdefault(setting, []).append((
                "/".join(k for k in keys if k in older),
                _Mapped(composed, _where(parts), any(p.from_env for p in parts))))
    out = {}
    for setting, found in candidates.items():
        (key, chosen), rest = found[0], found[1:]
        out[setting] = chosen
        shadowed = [k for k, m in rest if m.value != chosen.value]
        if shadowed:
            notes.append(f"{setting} comes from {key} ({chosen.source}); "
                         f"{', '.join(shadowed)} differ and are not used")
    unused: dict[str, list[str]] = {}
    for key in sorted(set(older) - used):
        why = next((w for k, w in LEGACY_UNUSED if key == k or (k.endswith("_")
                                                                and key.startswith(k))),
                   "not a setting of this toolkit")
        unused.setdefault(why, []).append(f"{key} ({older[key].where})")
    for why, named in unused.items():
        notes.append(f"older keys not used ({why}): {', '.join(named)}")
    return out


def describe(settings: Settings) -> list[tuple[str, str, str]]:
    """(name, shown value, source) per key; secrets masked."""
    rows = []
    for f in settings_fields():
        value = getattr(settings, f.name)
        shown = "****" if f.metadata["secret"] and value else ("" if value is None else str(value))
        rows.append((f.name, shown, settings.source_of(f.name)))
    return rows


def environment_table() -> list[tuple[str, str, str, str]]:
    """(env var, key, default, help) for every key, for documentation."""
    out = []
    for f in settings_fields():
        default = "" if f.default is None else str(f.default)
        if f.metadata["secret"] and default:
            default = "(set)"
        out.append((f.metadata["env"], f.name, default, f.metadata["help"]))
    return out
