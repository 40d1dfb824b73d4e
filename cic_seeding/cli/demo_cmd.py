"""``cic-seed demo``: the main job, end to end on a local devnet."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from cic_seeding.cli.app import cli, handles_errors, settings_from, verbosity_options
from cic_seeding.cli.import_cmd import stop_on_signals
from cic_seeding.cli.legacy import noted_option
from cic_seeding.errors import UsageError


@cli.command("demo")
@click.option("--users", type=int, default=300, show_default=True, help="Users to seed.")
@click.option("--workdir", "directory", metavar="DIR",
              help="Working directory: devnet/, data/ and the reports (wiped and rebuilt on "
              "every demo run) [default: demo].")
@noted_option("--dir", "old_dir", expose=True, metavar="DIR",
              why="the demo now spells its working directory --workdir DIR; --dir names the "
              "data directory on every other command")
@click.option("--seed", type=int, default=1, show_default=True, help="Generator seed.")
@click.option("--keep", is_flag=True,
              help="Leave every service the demo started running afterwards (anvil, the "
              "metadata server, the custodial engine, the USSD gateway), listed with their "
              "pids; `cic-seed devnet down --devnet DIR/devnet` stops them all.")
@click.option("--meta/--no-meta", default=True, show_default=True,
              help="Also run the metadata server and write every user's documents (cic_meta).")
@click.option("--custodial", is_flag=True,
              help="Also seed custodial users (cic_eth) through the custodial engine: embedded "
              "in this process (SQLite, in-memory broker; with --keep a process of its own on "
              "SQLite) unless custodial_db_url or custodial_broker_url is set.")
@click.option("--custodial-users", type=int, default=30, show_default=True,
              help="Custodial users to seed with --custodial (in DIR/data-custodial).")
@click.option("--ussd", is_flag=True,
              help="Also run the USSD gateway and seed users through it (cic_ussd): they "
              "register over its menus, their PINs are imported (ussd-pins), they are synced "
              "and verified with the USSD checks, and one logs in with its PIN at the end. "
              "Needs PostgreSQL and Redis (custodial_db_url, custodial_broker_url; default "
              "the local ones).")
@click.option("--ussd-users", type=int, default=20, show_default=True,
              help="USSD users to seed with --ussd (in DIR/data-ussd).")
@verbosity_options
@click.pass_context
@handles_errors
def demo_command(ctx: click.Context, /, users: int, directory: str | None, old_dir: str | None,
                 seed: int, keep: bool, meta: bool, custodial: bool, custodial_users: int,
                 ussd: bool, ussd_users: int, verbose: int, quiet: bool) -> int:
    """Devnet up, generate, import (eth), sync, verify, print the report.

    With --custodial and --ussd, more users go through the custodial engine and the USSD
    gateway."""
    from cic_devnet.demo import run_demo

    if directory is not None and old_dir is not None and directory != old_dir:
        raise UsageError(f"two working directories given: --workdir {directory} and --dir "
                         f"{old_dir}", hint="--dir is the old spelling of --workdir: give one")
    directory = directory or old_dir or "demo"
    settings_from(ctx, verbose, quiet, devnet=False)  # it makes its own devnet
    if custodial and custodial_users <= 0:
        raise UsageError(f"--custodial-users must be positive, got {custodial_users}")
    if ussd and ussd_users <= 0:
        raise UsageError(f"--ussd-users must be positive, got {ussd_users}")
    say = (lambda s: None) if quiet else (lambda s: click.echo(f"-- {s}", err=True))
    with stop_on_signals() as stop:
        result = run_demo(directory, users, seed=seed, keep=keep, meta=meta,
                          custodial=custodial_users if custodial else 0,
                          ussd=ussd_users if ussd else 0, verify=_verifier(), say=say,
                          stop=stop)
    click.echo(result.render_text())
    return 0 if result.ok else 1


def _verifier() -> Callable[..., Any]:
    """The verifier as a function of settings (imported here: the CLI stays quick to load)."""
    from cic_seeding.verify import verify_settings

    return verify_settings
