"""``cic-seed config show``: every resolved setting and where it came from."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import click

from cic_seeding.cli.app import cli, handles_errors, settings_from, verbosity_options
from cic_seeding.cli.legacy import dir_option, directory_of
from cic_seeding.config import describe, environment_table
from cic_seeding.datadir import dataset_settings


@cli.group("config")
def config_group() -> None:
    """Inspect configuration."""


def mask_url_password(value: str) -> str:
    """``scheme://user:****@host/...`` for a URL that carries a password; anything else as is."""
    if "://" not in value or "@" not in value:
        return value
    try:
        parts = urlsplit(value)
        if parts.password is None:
            return value
    except ValueError:
        return value
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:****@{host}"))


@config_group.command("show")
@click.argument("paths", nargs=-1, metavar="[DIR]")
@dir_option
@click.option("--devnet", "devnet_dir", help="Devnet directory (its devnet.json).")
@verbosity_options
@click.pass_context
@handles_errors
def show(ctx: click.Context, paths: tuple[str, ...], data_dir: str | None,
         devnet_dir: str | None, verbose: int, quiet: bool) -> int:
    """Print every setting, its value (secrets and URL passwords masked) and its source: flag,
    env NAME (this toolkit's CIC_* or the older scripts' names), the config file (an older
    config directory's FILE [section] key), devnet.json, the data directory DIR's manifest,
    or default."""
    settings = dataset_settings(settings_from(ctx, verbose, quiet,
                                              data_dir=directory_of(paths, data_dir),
                                              devnet_dir=devnet_dir))
    rows = describe(settings)
    width = max(len(name) for name, _, _ in rows)
    for name, value, source in rows:
        click.echo(f"{name:<{width}}  {mask_url_password(value) or '-':<44}  ({source})")
    return 0


@config_group.command("env")
def env() -> int:
    """List every environment variable with its key, default and meaning (Markdown)."""
    click.echo("| variable | key | default | meaning |\n|---|---|---|---|")
    for var, key, default, help_text in environment_table():
        click.echo(f"| `{var}` | `{key}` | {default or '-'} | {help_text} |")
    return 0
