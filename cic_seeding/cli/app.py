"""The ``cic-seed`` click group and what every command shares: settings, verbosity, errors."""

from __future__ import annotations

import functools
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import click

from cic_seeding.cli import legacy
from cic_seeding.config import Settings, load_settings
from cic_seeding.errors import CicSeedError
from cic_seeding.log import setup_logging

F = TypeVar("F", bound=Callable[..., Any])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_file", type=click.Path(),
              help="Config file (TOML), or a config directory of the older data-seeding "
              "scripts (ini files). Default: $CIC_CONFIG, else config/cic-seed.toml if present.")
@click.version_option(package_name="cic-seeding")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None) -> None:
    """Seed CIC-style EVM test networks with realistic users and money, then prove the result."""
    ctx.obj = {"config_file": config_file}


def verbosity_options(fn: F) -> F:
    """``-q``, ``-v``/``-vv``, and the options every command shares with the older scripts
    (``-c/--config``, ``--env-prefix``: :mod:`cic_seeding.cli.legacy`)."""
    fn = click.option("-v", "--verbose", count=True,
                      help="More output (-vv: debug, tracebacks).")(fn)
    fn = click.option("-q", "--quiet", is_flag=True, help="Errors only.")(fn)
    return legacy.common_options(fn)


def settings_from(ctx: click.Context, verbose: int = 0, quiet: bool = False, *,
                  devnet: bool = True, **flags: Any) -> Settings:
    """Resolve settings with ``flags`` at flag precedence, and set up logging with redaction.

    ``devnet=False``: a command that makes a devnet, or has no use for one, leaves the devnet
    directory's file unread (it may not exist yet)."""
    obj = legacy.root_obj(ctx)
    settings = load_settings(legacy.merged_flags(obj, flags), obj.get("config_file"),
                             devnet=devnet, env_prefix=obj.get("env_prefix"))
    setup_logging(-1 if quiet else verbose, settings.secrets())
    obj["verbosity"] = -1 if quiet else verbose
    legacy.tell_notes(obj, settings, -1 if quiet else verbose)
    return settings


def handles_errors(fn: F) -> F:
    """Turn a CicSeedError into one line on stderr and the error's exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CicSeedError as exc:
            ctx = click.get_current_context()
            verbosity = (ctx.find_root().obj or {}).get("verbosity", kwargs.get("verbose", 0))
            if verbosity and verbosity >= 2:
                traceback.print_exc()
            click.echo(f"error: {one_line(str(exc))}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            click.get_current_context().exit(130)

    return wrapper  # type: ignore[return-value]


def one_line(message: str) -> str:
    """``message`` on one line: a library's multi-line text (psycopg2, ...) joined by spaces."""
    return " ".join(part.strip() for part in message.strip().splitlines() if part.strip())


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()
