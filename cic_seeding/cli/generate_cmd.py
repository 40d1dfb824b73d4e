"""``cic-seed generate`` (= ``create_import_users.py``) and ``cic-seed validate``."""

from __future__ import annotations

from pathlib import Path

import click

from cic_seeding.cli.app import (
    cli,
    handles_errors,
    settings_from,
    stderr_is_terminal,
    verbosity_options,
)
from cic_seeding.generate.generator import GenerateOptions, generate
from cic_seeding.generate.validate import validate


@cli.command("generate")
@click.argument("count", type=int)
@click.option("--dir", "directory", help="Data directory to write (default: setting data_dir).")
@click.option("--seed", type=int, help="Seed; the same seed gives byte-identical output.")
@click.option("--tag", "tags", multiple=True, help="Tag for every user (repeatable). [individual]")
@click.option("--gift-threshold", type=int, default=100, show_default=True,
              help="Largest opening balance, in whole token units.")
@click.option("--decimals", type=int, default=6, show_default=True, help="Token decimals.")
@click.option("--chain-spec", help="Chain the users are generated for (default: setting).")
@click.option("--locale", default="en_KE", show_default=True, help="Faker locale for names.")
@click.option("--transactions", type=int, default=0, help="Transfer fixtures to write.")
@click.option("--epoch", type=int, help="Reference unix time for dates. [1700000000]")
@click.option("--workers", type=int, help="Worker processes (default: one per core).")
@click.option("--reset", is_flag=True, help="Wipe the directory first.")
@click.option("-f", "append", is_flag=True, help="Append users to an existing directory.")
@verbosity_options
@click.pass_context
@handles_errors
def generate_command(ctx: click.Context, count: int, directory: str | None, seed: int | None,
                     tags: tuple[str, ...], gift_threshold: int, decimals: int,
                     chain_spec: str | None, locale: str, transactions: int, epoch: int | None,
                     workers: int | None, reset: bool, append: bool, verbose: int,
                     quiet: bool) -> int:
    """Generate COUNT users into a data directory (no services needed)."""
    if reset and append:
        raise click.UsageError("--reset and -f exclude each other")
    settings = settings_from(ctx, verbose, quiet, data_dir=directory, chain_spec=chain_spec,
                             workers=workers)
    opts = GenerateOptions(
        directory=Path(settings.data_dir), count=count, seed=seed, tags=tags or ("individual",),
        gift_threshold=gift_threshold, decimals=decimals, chain_spec=settings.chain_spec,
        locale=locale, transactions=transactions, epoch=epoch,
        mode="reset" if reset else "append" if append else "new", workers=settings.workers)
    if stderr_is_terminal() and not quiet:
        with click.progressbar(length=count, label="generating", file=click.get_text_stream(
                "stderr")) as bar:
            result = generate(opts, progress=bar.update)
    else:
        result = generate(opts)
    if not quiet:
        rate = result.generated / result.seconds if result.seconds else 0.0
        click.echo(f"wrote {result.generated} users to {result.directory} "
                   f"(indices {result.first_index}..{result.first_index + result.generated - 1}, "
                   f"seed {result.manifest.seed}, {rate:,.0f} users/s)")
    return 0


@cli.command("validate")
@click.argument("directory", type=click.Path(file_okay=False))
@verbosity_options
@click.pass_context
@handles_errors
def validate_command(ctx: click.Context, directory: str, verbose: int, quiet: bool) -> int:
    """Check a data directory against every rule; exit 1 if any fails."""
    settings_from(ctx, verbose, quiet)
    result = validate(directory)
    click.echo(result.render_text())
    return 0 if result.passed else 1
