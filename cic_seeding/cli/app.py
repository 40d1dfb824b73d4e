"""The ``cic-seed`` click group and what every command shares: settings, verbosity, errors.

The group is lazy: a command's module is imported only when that command runs or shows its
help, so ``cic-seed --help`` imports no command module, and a command module imports the heavy
libraries (signing, ABI, Celery, ...) inside the command's function. ``COMMANDS`` names each
command's module and the one-line summary ``cic-seed --help`` lists (the first sentence of the
command's docstring; tests/test_packaging.py keeps the two in step).
"""

from __future__ import annotations

import functools
import importlib
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from cic_seeding.cli import legacy
from cic_seeding.errors import CicSeedError

if TYPE_CHECKING:
    from cic_seeding.config import Settings

F = TypeVar("F", bound=Callable[..., Any])

#: command name -> (module that defines it, its summary in ``cic-seed --help``)
COMMANDS: dict[str, tuple[str, str]] = {
    "config": ("cic_seeding.cli.config_cmd", "Inspect configuration."),
    "demo": ("cic_seeding.cli.demo_cmd",
             "Devnet up, generate, import (eth), sync, verify, print the report."),
    "devnet": ("cic_seeding.cli.devnet_cmd",
               "Run a local devnet: anvil with the CIC contracts deployed."),
    "doctor": ("cic_seeding.cli.doctor_cmd",
               "Check that the chain, registry, signer and services are ready; exit 1 if not."),
    "generate": ("cic_seeding.cli.generate_cmd",
                 "Generate COUNT users into a data directory (no services needed)."),
    "import": ("cic_seeding.cli.import_cmd",
               "Import the users of DIR (or --dir) with importer NAME (eth, cic_meta, ...)."),
    "import-worker": ("cic_seeding.cli.import_cmd", "Run an import worker for "
                      "`cic-seed import eth --executor celery` (until stopped)."),
    "importers": ("cic_seeding.cli.import_cmd", "List the installed importers."),
    "pins": ("cic_seeding.cli.generate_cmd",
             "Write pins.csv (phone, seeded PIN, bcrypt hash) for every user of the data "
             "directory (= create_import_pins.py; no services needed)."),
    "repair": ("cic_seeding.cli.repair_cmd",
               "Verify DIR, redo exactly what each failing user is missing, and verify again."),
    "sync": ("cic_seeding.cli.import_cmd", "Give every registered user of importer NAME its "
             "opening balance, faucet payout and gas."),
    "traffic": ("cic_seeding.cli.import_cmd",
                "Replay DIR's transactions.csv as transfers between imported sovereign users."),
    "validate": ("cic_seeding.cli.generate_cmd",
                 "Check a data directory against every rule; exit 1 if any fails."),
    "verify": ("cic_seeding.cli.verify_cmd",
               "Verify every user of DIR on the network; exit 0 if all checks pass, 1 if any "
               "fails (or, with --strict, a check that applies was skipped)."),
}


class LazyGroup(click.Group):
    """A group that imports a command's module (which registers the command on it) only when
    the command is looked up, and lists unloaded commands by their summary in ``COMMANDS``."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            importlib.import_module(COMMANDS[cmd_name][0])
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = [n for n in self.list_commands(ctx)
                 if n in COMMANDS or not self.commands[n].hidden]
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            loaded = self.commands.get(name)
            short = (loaded.get_short_help_str(limit) if loaded is not None
                     else click.utils.make_default_short_help(COMMANDS[name][1], limit))
            rows.append((name, short))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
    from cic_seeding.config import load_settings
    from cic_seeding.log import setup_logging

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

