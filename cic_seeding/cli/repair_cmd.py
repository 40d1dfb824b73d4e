"""``cic-seed repair DIR``: verify, redo what each failing user lacks, verify again."""

from __future__ import annotations

from typing import Any

import click

from cic_seeding.cli.app import cli, handles_errors, settings_from, verbosity_options
from cic_seeding.cli.chain_options import chain_flags, chain_options
from cic_seeding.cli.legacy import dir_option, directory_of
from cic_seeding.errors import UsageError


@cli.command("repair")
@click.argument("paths", nargs=-1, metavar="[DIR]")
@dir_option
@chain_options
@click.option("--importer", help="Repair only the users of this importer (default: every "
              "importer that registered DIR's users).")
@click.option("--dry-run", is_flag=True,
              help="Verify and print the plan (which users, which reruns); change nothing.")
@click.option("--state-url", help="State store: sqlite path or postgresql:// URL.")
@click.option("--meta-url", "meta_url", help="Metadata server URL.")
@click.option("--timeout", type=float, default=600.0, show_default=True,
              help="Seconds a payment step waits for the chain (a rerun resumes).")
@verbosity_options
@click.pass_context
@handles_errors
def repair_command(ctx: click.Context, /, paths: tuple[str, ...], data_dir: str | None,
                   importer: str | None, dry_run: bool, state_url: str | None,
                   meta_url: str | None, timeout: float, verbose: int, quiet: bool,
                   **kw: Any) -> int:
    """Verify DIR, redo exactly what each failing user is missing, and verify again.

    A deleted or damaged keyfile is written again from the data directory's key material, a
    metadata document put again, a registration or custodial account the target lacks made
    again, a payment the chain's logs do not show paid again (never twice). Exit 0 when verify
    passes afterwards (with --dry-run: when the plan was printed), 1 if not."""
    from cic_seeding.repair import repair
    from cic_seeding.verify import VerifyOptions

    directory = directory_of(paths, data_dir)
    if directory is None:
        raise UsageError("missing DIR", hint="give the data directory to repair")
    settings = settings_from(ctx, verbose, quiet, data_dir=directory, state_url=state_url,
                             meta_url=meta_url, **chain_flags(kw))
    say = None if quiet else (lambda line: click.echo(f"repairing: {line}", err=True))
    result = repair(settings, VerifyOptions(importer=importer), dry_run=dry_run,
                    timeout=timeout, report=say)
    if not quiet or not result.ok:
        click.echo(result.render_text(dry_run=dry_run))
    return 0 if dry_run or result.ok else 1
