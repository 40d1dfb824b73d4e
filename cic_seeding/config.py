"""The one typed settings object and where each value came from.

Precedence, highest first: command-line flag > environment variable > config file > default.
Every key is declared once, in :class:`Settings`, with its environment variable and help text;
``cic-seed config show`` and the README's table are generated from these declarations.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cic_seeding.errors import ConfigError
from cic_seeding.remote import DEFAULT_BREAKER_COOLDOWN, DEFAULT_BREAKER_THRESHOLD

DEFAULT_CONFIG_FILE = Path("config") / "cic-seed.toml"
CONFIG_ENV = "CIC_CONFIG"
SOURCE_DEFAULT = "default"
SOURCE_FLAG = "flag"


def _key(default: Any, env: str, help: str, *, kind: type = str, secret: bool = False) -> Any:
    return field(default=default,
                 metadata={"env": env, "help": help, "kind": kind, "secret": secret})


#: Default of ``batch_size`` (the batch path registers more per batch unless it is set).
DEFAULT_BATCH_SIZE = 250


@dataclass(frozen=True)
class Settings:
    """Resolved configuration. Read attributes; ``sources[name]`` says where each came from."""

    data_dir: str = _key("out", "CIC_DATA_DIR",
                         "data directory written by generate, read by the rest")
    chain_spec: str = _key(
        "evm:byzantium:8996:bloxberg", "CIC_CHAIN_SPEC",
        "chain the users are generated for / imported into: engine:fork:network_id:common_name")
    devnet_dir: str | None = _key(
        None, "CIC_DEVNET_DIR",
        "devnet directory holding devnet.json (instead of rpc/registry/keyfile)")
    rpc_url: str | None = _key(None, "CIC_RPC_URL", "JSON-RPC endpoint of the EVM node (-p)")
    registry_address: str | None = _key(None, "CIC_REGISTRY_ADDRESS", "CIC registry contract (-r)")
    keyfile: str | None = _key(None, "CIC_KEYFILE", "v3 keyfile of the signer (-y)")
    keyfile_password: str | None = _key(
        None, "CIC_KEYFILE_PASSWORD", "password of the signer keyfile", secret=True)
    keyfile_password_file: str | None = _key(
        None, "CIC_KEYFILE_PASSWORD_FILE", "file holding the signer keyfile password")
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
    meta_url: str | None = _key(None, "CIC_META_URL", "metadata server URL (cic_meta importer)")
    meta_token: str | None = _key(
        None, "CIC_META_TOKEN", "bearer token for metadata server writes", secret=True)
    meta_token_file: str | None = _key(
        None, "CIC_META_TOKEN_FILE", "file holding the metadata server write token")
    meta_concurrency: int = _key(16, "CIC_META_CONCURRENCY",
                                 "metadata documents written concurrently", kind=int)
    meta_retries: int = _key(5, "CIC_META_RETRIES",
                             "retries of a transient metadata server failure", kind=int)
    custodial_broker_url: str | None = _key(
        None, "CIC_CUSTODIAL_BROKER_URL",
        "Redis URL of the custodial engine: Celery broker, results and callbacks (default: "
        "the devnet's, else redis://127.0.0.1:6379/0; memory://: an engine embedded in this "
        "process, as `cic-seed demo --custodial` runs it)")
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
        "(sqlite:///PATH: one file, for an engine embedded in one process)")
    custodial_db_schema: str | None = _key(
        None, "CIC_CUSTODIAL_DB_SCHEMA", "engine side: PostgreSQL schema of the custodial engine")
    custodial_passphrase: str | None = _key(
        None, "CIC_CUSTODIAL_PASSPHRASE",
        "engine side: passphrase the custodial keys are encrypted with", secret=True)
    custodial_passphrase_file: str | None = _key(
        None, "CIC_CUSTODIAL_PASSPHRASE_FILE",
        "engine side: file holding the custodial passphrase")
    custodial_keyfile: str | None = _key(
        None, "CIC_CUSTODIAL_KEYFILE",
        "engine side: v3 keyfile of the engine's signer (default: the devnet's)")
    custodial_keyfile_password_file: str | None = _key(
        None, "CIC_CUSTODIAL_KEYFILE_PASSWORD_FILE",
        "engine side: file holding the password of the engine signer's keyfile")
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
        None, "CIC_USSD_DB_SCHEMA", "PostgreSQL schema of the USSD gateway's accounts")
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def source_of(self, name: str) -> str:
        return self.sources.get(name, SOURCE_DEFAULT)

    def secrets(self) -> list[str]:
        """The secret values in force, so logging can redact them."""
        return [
            str(getattr(self, f.name)) for f in settings_fields()
            if f.metadata["secret"] and getattr(self, f.name)
        ]

    def replace(self, **flags: Any) -> Settings:
        """A copy with ``flags`` (those not None) applied at flag precedence."""
        return _apply(self, {k: v for k, v in flags.items() if v is not None}, SOURCE_FLAG)


def settings_fields() -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(Settings) if f.name != "sources"]


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
    return str(raw)


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


def load_settings(
    flags: Mapping[str, Any] | None = None,
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve every setting: flags > environment > config file > defaults.

    ``config_file`` defaults to ``$CIC_CONFIG``, else ``config/cic-seed.toml`` when it exists.
    """
    env = os.environ if environ is None else environ
    settings = Settings()
    path = config_file or env.get(CONFIG_ENV)
    if path:
        settings = _apply(settings, _read_config_file(Path(path)), str(path))
    elif DEFAULT_CONFIG_FILE.is_file():
        settings = _apply(settings, _read_config_file(DEFAULT_CONFIG_FILE),
                          str(DEFAULT_CONFIG_FILE))
    for f in settings_fields():
        var = f.metadata["env"]
        if var in env and env[var] != "":
            settings = _apply(settings, {f.name: env[var]}, f"env {var}")
    return settings.replace(**(flags or {}))


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
