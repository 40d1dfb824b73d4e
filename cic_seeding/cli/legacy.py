"""The older data-seeding scripts' options, next to the ``cic-seed`` ones.

Every command takes ``-c/--config`` (a TOML file, or a config directory of the older layout)
and ``--env-prefix`` (the older scripts' prefix of environment names, default
``$CONFINI_ENV_PREFIX``). An older option either gives a setting under its old name
(``--meta-provider`` is ``--meta-url``), or no longer means anything here (a callback host:
the custodial engine answers over its own channel) and is accepted, saying why at ``-v``. Both
kinds are collected on the root context and applied by :func:`merged_flags` and
:func:`tell_notes` when a command resolves its settings.

A directory is positional on every command that reads one, ``--dir`` its synonym (and
``--userdir``, the older scripts' name). The README of the older tool labels its positionals
with words (``pinsdir <pins dir>``, ``userdir <users dir>``); such a word before a path is
dropped (:func:`directory_of`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from cic_seeding.config import Settings
from cic_seeding.errors import UsageError

F = TypeVar("F", bound=Callable[..., Any])

#: Words the older README puts before a positional directory (``pinsdir <pins dir>``).
LABELS = ("userdir", "pinsdir", "datadir", "user_dir")

_FLAGS = "legacy_flags"  # setting -> (value, option name)
_NOTES = "legacy_notes"  # lines shown at -v
_REDIS = "legacy_redis"  # --redis-host/--redis-port/--redis-db parts


def root_obj(ctx: click.Context) -> dict[str, Any]:
    """The dict every command of one run shares (the root context's ``obj``)."""
    root = ctx.find_root()
    if root.obj is None:
        root.obj = {}
    obj: dict[str, Any] = root.obj
    return obj


def note(ctx: click.Context, text: str) -> None:
    """Say ``text`` once, at ``-v``, when the command resolves its settings."""
    notes = root_obj(ctx).setdefault(_NOTES, [])
    if text not in notes:
        notes.append(text)


def _store(key: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None:
            root_obj(ctx)[key] = value
        return value
    return callback


def common_options(fn: F) -> F:
    """``-c/--config`` and ``--env-prefix``, for every command."""
    fn = click.option("--env-prefix", expose_value=False, callback=_store("env_prefix"),
                      metavar="PREFIX",
                      help="Prefix of the older environment names (PREFIX_RPC_PROVIDER ...; "
                      "default $CONFINI_ENV_PREFIX).")(fn)
    fn = click.option("-c", "--config", expose_value=False, callback=_store("config_file"),
                      type=click.Path(), metavar="FILE|DIR",
                      help="Config file (TOML), or a config directory of the older "
                      "data-seeding scripts (ini files).")(fn)
    return fn


def setting_option(*decls: str, setting: str, help: str, metavar: str = "VALUE",
                   kind: Any = None) -> Callable[[F], F]:
    """An older option that gives ``setting`` (at flag precedence, as its new spelling)."""
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None:
            root_obj(ctx).setdefault(_FLAGS, {})[setting] = (value, param.opts[-1])
        return value

    def decorate(fn: F) -> F:
        return click.option(*decls, expose_value=False, callback=callback, metavar=metavar,
                            type=kind, help=help)(fn)
    return decorate


def noted_option(*decls: str, why: str, is_flag: bool = False, metavar: str = "VALUE",
                 expose: bool = False) -> Callable[[F], F]:
    """An older option that no longer means anything here: accepted, and ``why`` said at -v
    (``expose``: an older spelling whose value the command still takes, saying ``why``)."""
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value not in (None, False):
            done = "still works" if expose else "is not needed"
            note(ctx, f"{'/'.join(param.opts)} {done}: {why}")
        return value

    def decorate(fn: F) -> F:
        kind = "Older spelling, still works" if expose else "Older option, accepted"
        extra: dict[str, Any] = {"is_flag": True} if is_flag else {"metavar": metavar}
        return click.option(*decls, expose_value=expose, callback=callback,
                            help=f"{kind}: {why}.", **extra)(fn)
    return decorate


def chain_legacy_options(fn: F) -> F:
    """Older options of the scripts that talk to a chain."""
    why = ("the data directory's manifest names the chain its users were generated for "
           "(-i names the target chain)")
    fn = noted_option("--old-chain-spec", "--src-chain-spec", why=why, metavar="SPEC")(fn)
    return fn


def custodial_legacy_options(fn: F) -> F:
    """The older ``cic_eth`` import's Redis options: task submission and callbacks."""
    why = ("the custodial engine replies over its own broker (custodial_broker_url), so no "
           "callback host or port is needed")
    fn = noted_option("--redis-port-callback", why=why, metavar="PORT")(fn)
    fn = noted_option("--redis-host-callback", why=why, metavar="HOST")(fn)
    for decl, part in (("--redis-db", "db"), ("--redis-port", "port"), ("--redis-host", "host")):
        fn = click.option(decl, expose_value=False, callback=_redis_part(part),
                          metavar=part.upper(),
                          help=f"Older option: {part} of the custodial engine's Redis broker "
                          "(custodial_broker_url redis://HOST:PORT/DB).")(fn)
    fn = noted_option("--batch-delay", why="batches are paced by their receipts, not by a "
                      "delay", metavar="SECONDS")(fn)
    return fn


def _redis_part(part: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None:
            root_obj(ctx).setdefault(_REDIS, {})[part] = value
        return value
    return callback


def merged_flags(obj: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """``flags`` with the settings the older options give where no new option gives one;
    UsageError when an older and a new spelling name different values."""
    given = dict(obj.get(_FLAGS, {}))
    redis = obj.get(_REDIS, {})
    if redis:
        if "host" not in redis:
            raise UsageError("--redis-port/--redis-db need --redis-host",
                             hint="or give the broker whole: CIC_CUSTODIAL_BROKER_URL")
        url = f"redis://{redis['host']}:{redis.get('port', 6379)}/{redis.get('db', 0)}"
        given["custodial_broker_url"] = (url, "--redis-host")
    out = dict(flags)
    for setting, (value, option) in given.items():
        current = out.get(setting)
        if current is not None and str(current) != str(value):
            raise UsageError(f"{option} {value} and the option for {setting} ({current}) "
                             "disagree", hint="give one of them")
        out[setting] = value
    return out


def tell_notes(obj: dict[str, Any], settings: Settings, verbosity: int) -> None:
    """The notes of the older options and configuration, once, on stderr at ``-v``."""
    if verbosity < 1 or obj.get("notes_told"):
        return
    obj["notes_told"] = True
    for line in [*obj.get(_NOTES, []), *settings.notes]:
        click.echo(f"note: {line}", err=True)


def directory_of(paths: tuple[str, ...], option: str | None, *, what: str = "DIR"
                 ) -> str | None:
    """The one directory given positionally (a label word before it dropped) or by option;
    UsageError when two are given that differ."""
    rest = list(paths)
    if len(rest) >= 2 and rest[0].lower() in LABELS:
        rest = rest[1:]
    if len(rest) > 1:
        raise UsageError(f"one {what} expected, got {' '.join(paths)}",
                         hint="give the data directory once (positionally, or with --dir)")
    given = rest[0] if rest else None
    if given is not None and option is not None and Path(given) != Path(option):
        raise UsageError(f"two data directories given: {given} and --dir {option}",
                         hint="--dir is the positional directory's synonym: give one")
    return given or option


def dir_option(fn: F) -> F:
    """``--dir DIR`` (the older scripts' ``--userdir``): the positional data directory's
    synonym; the keyword argument ``data_dir``."""
    return click.option("--dir", "--userdir", "data_dir", metavar="DIR",
                        help="Data directory: the positional DIR's synonym (default: setting "
                        "data_dir).")(fn)
