"""``cic-seed doctor``: one line per check of the chain, registry, signer and services."""

from __future__ import annotations

from typing import Any

import click

from cic_seeding.cli.app import cli, handles_errors, settings_from, verbosity_options
from cic_seeding.cli.chain_options import chain_flags, chain_options
from cic_seeding.cli.legacy import dir_option, directory_of


@cli.command("doctor")
@click.argument("paths", nargs=-1, metavar="[DIR]")
@dir_option
@chain_options
@verbosity_options
@click.pass_context
@handles_errors
def doctor_command(ctx: click.Context, /, paths: tuple[str, ...], data_dir: str | None,
                   verbose: int, quiet: bool, **kw: Any) -> int:
    """Check that the chain, registry, signer and services are ready; exit 1 if not.

    DIR (or --dir) is a data directory whose manifest names the chain."""
    from cic_seeding.doctor import doctor  # keeps -h quick

    settings = settings_from(ctx, verbose, quiet, data_dir=directory_of(paths, data_dir),
                             **chain_flags(kw))
    result = doctor(settings)
    click.echo(result.render_text())
    return 0 if result.ok else 1
