"""``cic-seed generate`` (= ``create_import_users.py``) and ``cic-seed validate``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import IO, Any

import click

from cic_seeding.cli.app import (
    cli,
    handles_errors,
    settings_from,
    verbosity_options,
)
from cic_seeding.cli.legacy import dir_option, directory_of
from cic_seeding.cli.progress import stage
from cic_seeding.errors import UsageError


class _OneLineUsageError(click.ClickException):
    """A click usage error shown like every other error: one ``error: ...`` line, exit 2."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class OneLineErrorsCommand(click.Command):
    """A command whose own usage errors (bad option, missing or non-integer argument) are one
    line, and whose negative COUNT (``-3``, which click would read as an option) is a range error.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            if _NEGATIVE.fullmatch(exc.option_name) and any(
                    p.name == "count" for p in self.params if isinstance(p, click.Argument)):
                raise _OneLineUsageError(
                    f"COUNT must be a positive number of users, got {exc.option_name}") from None
            raise _OneLineUsageError(f"{exc.format_message()} (see {ctx.command_path} -h)") \
                from None
        except click.UsageError as exc:
            raise _OneLineUsageError(f"{exc.format_message()} (see {ctx.command_path} -h)") \
                from None


_NEGATIVE = re.compile(r"-\d+")


@cli.command("generate", cls=OneLineErrorsCommand)
@click.argument("count", type=int)
@click.option("--dir", "directory", help="Data directory to write (default: setting data_dir).")
@click.option("--seed", type=int,
              help="Seed; the same seed gives byte-identical output. [random, kept in manifest]")
@click.option("--tag", "tags", multiple=True, help="Tag for every user (repeatable). [individual]")
@click.option("--gift-threshold", type=int,
              help="Largest opening balance, in whole token units. [100]")
@click.option("--decimals", type=int, help="Token decimals. [6]")
@click.option("-i", "--chain-spec", "chain_spec",
              help="Chain the users are generated for. [setting chain_spec]")
@click.option("--locale", help="Faker locale for names. [en_KE]")
@click.option("--transactions", type=int, default=0, help="Transfer fixtures to write. [0]")
@click.option("--epoch", type=int, help="Reference unix time for dates. [1700000000]")
@click.option("--workers", type=int, help="Worker processes. [setting workers; 0: one per core]")
@click.option("--reset", is_flag=True, help="Wipe the directory first.")
@click.option("-f", "append", is_flag=True,
              help="Append users to an existing directory (its manifest's seed, decimals, ...).")
@verbosity_options
@click.pass_context
@handles_errors
def generate_command(ctx: click.Context, /, count: int, directory: str | None, seed: int | None,
                     tags: tuple[str, ...], gift_threshold: int | None, decimals: int | None,
                     chain_spec: str | None, locale: str | None, transactions: int,
                     epoch: int | None, workers: int | None, reset: bool, append: bool,
                     verbose: int, quiet: bool) -> int:
    """Generate COUNT users into a data directory (no services needed).

    With -f, options left out take the directory's manifest values; giving another value than
    the manifest's is an error.
    """
    from cic_seeding.generate.generator import GenerateOptions, generate  # keeps -h quick

    if reset and append:
        raise UsageError("--reset and -f exclude each other",
                         hint="--reset wipes the directory, -f appends to it")
    settings = settings_from(ctx, verbose, quiet, devnet=False, data_dir=directory,
                             chain_spec=chain_spec, workers=workers)
    given_chain = settings.chain_spec if settings.source_of("chain_spec") != "default" else None
    opts = GenerateOptions(
        directory=Path(settings.data_dir), count=count, seed=seed, tags=tags or None,
        gift_threshold=gift_threshold, decimals=decimals, chain_spec=given_chain,
        locale=locale, transactions=transactions, epoch=epoch,
        mode="reset" if reset else "append" if append else "new", workers=settings.workers)
    with stage("generate", quiet) as shown:  # the timeline starts with the first import
        shown.update(0, count)
        result = generate(opts, progress=shown.advance)
    if not quiet:
        rate = result.generated / result.seconds if result.seconds else 0.0
        click.echo(f"wrote {result.generated} users to {result.directory} "
                   f"(indices {result.first_index}..{result.first_index + result.generated - 1}, "
                   f"seed {result.manifest.seed}, {rate:,.0f} users/s)")
    return 0


@cli.command("validate", cls=OneLineErrorsCommand)
@click.argument("paths", nargs=-1, metavar="DIR")
@dir_option
@verbosity_options
@click.pass_context
@handles_errors
def validate_command(ctx: click.Context, /, paths: tuple[str, ...], data_dir: str | None,
                     verbose: int, quiet: bool) -> int:
    """Check a data directory against every rule; exit 1 if any fails."""
    from cic_seeding.generate.validate import validate  # keeps -h quick

    directory = directory_of(paths, data_dir)
    if directory is None:
        raise UsageError("missing DIR", hint="give the data directory to validate")
    settings_from(ctx, verbose, quiet, devnet=False)
    result = validate(directory)
    click.echo(result.render_text())
    return 0 if result.passed else 1


@cli.command("pins", cls=OneLineErrorsCommand)
@click.argument("paths", nargs=-1, metavar="[PINSDIR]")
@dir_option
@click.option("--rounds", type=int, default=10, show_default=True,
              help="bcrypt cost of the PIN hashes.")
@verbosity_options
@click.pass_context
@handles_errors
def pins_command(ctx: click.Context, /, paths: tuple[str, ...], data_dir: str | None,
                 rounds: int, verbose: int, quiet: bool) -> int:
    """Write pins.csv (phone, seeded PIN, bcrypt hash) for every user of the data directory
    (= create_import_pins.py; no services needed).

    `pins DIR` writes DIR/pins.csv. With --dir/--userdir USERS, a positional PINSDIR is where
    pins.csv goes instead (with pins.json naming USERS, so that `import ussd-pins PINSDIR`
    finds the users): the older `create_import_pins.py --userdir USERS [pinsdir] PINS`."""
    from cic_seeding.ussd.pins import write_pins

    given = directory_of(paths, None, what="PINSDIR") if paths else None
    users = data_dir or given
    into = given if data_dir is not None else None
    settings = settings_from(ctx, verbose, quiet, devnet=False, data_dir=users)
    written = write_pins(settings.data_dir, rounds=rounds,
                         into=into if into is not None else settings.pins_dir)
    click.echo(str(written))
    return 0
