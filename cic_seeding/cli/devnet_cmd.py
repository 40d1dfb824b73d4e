"""``cic-seed devnet up|down|deploy``: the local chain with the CIC contracts."""

from __future__ import annotations

import click

from cic_seeding.cli.app import cli, handles_errors, settings_from, verbosity_options
from cic_seeding.cli.chain_options import F
from cic_seeding.cli.legacy import noted_option
from cic_seeding.config import Settings
from cic_seeding.errors import UsageError

DEFAULT_DIR = "devnet"


def devnet_dir_options(fn: F) -> F:
    """``--devnet DIR`` (``--devnet-dir``), as every command names a devnet directory, and
    ``--dir``, the spelling the devnet commands had before ``--dir`` meant the data directory
    everywhere: still accepted, said at -v."""
    fn = noted_option("--dir", "old_dir", expose=True, metavar="DIR",
                      why="the devnet commands now spell their directory --devnet DIR; --dir "
                      "names the data directory on every other command")(fn)
    return click.option("--devnet", "--devnet-dir", "directory", metavar="DIR",
                        help=f"Where devnet.json, the deployer keyfile and logs go "
                        f"[default: {DEFAULT_DIR}].")(fn)


def devnet_directory(directory: str | None, old_dir: str | None) -> str:
    if directory is not None and old_dir is not None and directory != old_dir:
        raise UsageError(f"two devnet directories given: --devnet {directory} and --dir "
                         f"{old_dir}", hint="--dir is the old spelling of --devnet: give one")
    return directory or old_dir or DEFAULT_DIR


def _deploy_options(symbol: str, decimals: int, faucet_amount: int):  # type: ignore[no-untyped-def]
    from cic_devnet.deploy import DeployOptions

    return DeployOptions(token_symbol=symbol, decimals=decimals,
                         faucet_amount_units=faucet_amount)


def deploy_flags(fn: F) -> F:
    fn = click.option("--faucet-amount", type=int, default=5, show_default=True,
                      help="Faucet payout in whole tokens (0: none).")(fn)
    fn = click.option("--decimals", type=int, default=6, show_default=True,
                      help="Token decimals.")(fn)
    fn = click.option("--symbol", default="GFT", show_default=True, help="Token symbol.")(fn)
    return click.option("-i", "--chain-spec", help="Chain spec (its network id is the chain "
                        "id).")(fn)


@cli.group("devnet")
def devnet_group() -> None:
    """Run a local devnet: anvil with the CIC contracts deployed."""


@devnet_group.command("up")
@devnet_dir_options
@click.option("--port", type=int, default=0, help="RPC port (default: a free one).")
@click.option("--state", type=click.Path(dir_okay=False),
              help="Persist chain state in FILE and reload it on the next start.")
@click.option("--meta", is_flag=True, help="Also start the metadata server.")
@click.option("--meta-db", help="PostgreSQL URL for the metadata server (default: SQLite).")
@click.option("--custodial", is_flag=True,
              help="Also start the custodial engine's workers (PostgreSQL and Redis from "
              "custodial_db_url / custodial_broker_url, default local ones).")
@click.option("--custodial-workers", type=int, default=1, show_default=True,
              help="Custodial worker processes to start.")
@click.option("--ussd", is_flag=True,
              help="Also start the USSD gateway (with the metadata server and the custodial "
              "engine; accounts in ussd_db_url, default the engine's PostgreSQL).")
@deploy_flags
@verbosity_options
@click.pass_context
@handles_errors
def up_command(ctx: click.Context, /, directory: str | None, old_dir: str | None, port: int,
               state: str | None, meta: bool, meta_db: str | None, custodial: bool,
               custodial_workers: int, ussd: bool,
               chain_spec: str | None, symbol: str, decimals: int, faucet_amount: int,
               verbose: int, quiet: bool) -> int:
    """Start anvil on 127.0.0.1 and deploy; prints the registry address."""
    from cic_devnet.devnet import devnet_up

    directory = devnet_directory(directory, old_dir)
    settings = settings_from(ctx, verbose, quiet, devnet=False, chain_spec=chain_spec)
    devnet = devnet_up(directory, port=port, state=state, chain_spec=settings.chain_spec,
                       options=_deploy_options(symbol, decimals, faucet_amount), detach=True,
                       meta=meta, meta_db=meta_db, custodial=custodial,
                       custodial_options=_engine_options(settings, custodial_workers)
                       if custodial or ussd else None, ussd=ussd,
                       ussd_db=settings.ussd_db_url, ussd_schema=settings.ussd_db_schema)
    if not quiet:
        click.echo(f"devnet up: {devnet.rpc_url} (anvil pid {devnet.info['anvil']['pid']}), "
                   f"{devnet.directory}/devnet.json", err=True)
        if meta or ussd:
            click.echo(f"metadata server: {devnet.info['meta']['url']}", err=True)
        if custodial or ussd:
            engine = devnet.info["custodial"]
            click.echo(f"custodial engine: {len(engine['workers'])} worker(s) on queue "
                       f"{engine['queue']} at {engine['broker_url']}, database "
                       f"{engine['db_url']} schema {engine['db_schema']}", err=True)
        if ussd:
            gateway = devnet.info["ussd"]
            click.echo(f"USSD gateway: {gateway['url']} (service code "
                       f"{gateway['service_code']}), accounts in schema {gateway['schema']}",
                       err=True)
    click.echo(devnet.registry)
    return 0


def _engine_options(settings: Settings, workers: int):  # type: ignore[no-untyped-def]
    from cic_devnet.custodial.devnet import EngineOptions
    from cic_seeding.chain.signer import read_password

    if workers < 1:
        raise UsageError(f"--custodial-workers must be at least 1, got {workers}")
    passphrase = None
    if settings.custodial_passphrase or settings.custodial_passphrase_file:
        passphrase = read_password(settings.custodial_passphrase,
                                   settings.custodial_passphrase_file, "custodial passphrase")
    return EngineOptions(broker_url=settings.custodial_broker_url,
                         db_url=settings.custodial_db_url, schema=settings.custodial_db_schema,
                         queue=settings.custodial_queue, passphrase=passphrase, workers=workers)


@devnet_group.command("down")
@devnet_dir_options
@verbosity_options
@click.pass_context
@handles_errors
def down_command(ctx: click.Context, /, directory: str | None, old_dir: str | None,
                 verbose: int, quiet: bool) -> int:
    """Stop the devnet of DIR (by the process id devnet.json records) and drop the
    PostgreSQL schemas its `up` made (kept when it has a --state file)."""
    from cic_devnet.devnet import devnet_down

    settings_from(ctx, verbose, quiet, devnet=False)
    stopped = devnet_down(devnet_directory(directory, old_dir))
    if not quiet:
        click.echo("devnet stopped" if stopped else "devnet was not running")
    return 0


@devnet_group.command("deploy")
@click.option("--rpc", "-p", "rpc_url", required=True,
              help="JSON-RPC URL of an existing node (-p, as on every chain command).")
@click.option("--keyfile", "-y", required=True, help="v3 keyfile of the deployer (-y).")
@devnet_dir_options
@deploy_flags
@verbosity_options
@click.pass_context
@handles_errors
def deploy_command(ctx: click.Context, /, rpc_url: str, keyfile: str, directory: str | None,
                   old_dir: str | None,
                   chain_spec: str | None, symbol: str, decimals: int, faucet_amount: int,
                   verbose: int, quiet: bool) -> int:
    """Deploy the CIC contracts onto an existing node; prints the registry address."""
    from cic_devnet.devnet import devnet_deploy
    from cic_seeding.chain.signer import Signer, read_password

    directory = devnet_directory(directory, old_dir)
    settings = settings_from(ctx, verbose, quiet, devnet=False, chain_spec=chain_spec,
                             keyfile=keyfile)
    password = read_password(settings.keyfile_password, settings.keyfile_password_file,
                             f"keyfile {keyfile}")
    info = devnet_deploy(rpc_url, Signer.from_keyfile(keyfile, password), directory,
                         settings.chain_spec, _deploy_options(symbol, decimals, faucet_amount),
                         keyfile=keyfile, password_file=settings.keyfile_password_file)
    click.echo(info["registry"])
    return 0
