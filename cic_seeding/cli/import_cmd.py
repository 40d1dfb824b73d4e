"""``cic-seed import NAME`` and ``cic-seed sync NAME``: importers and the block syncer."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cic_seeding.cli.app import cli, handles_errors, settings_from, verbosity_options
from cic_seeding.cli.chain_options import chain_flags, chain_options, tx_flags, tx_options
from cic_seeding.cli.legacy import (
    custodial_legacy_options,
    dir_option,
    directory_of,
    setting_option,
)
from cic_seeding.cli.progress import stage
from cic_seeding.errors import UsageError

if TYPE_CHECKING:
    from cic_seeding.config import Settings


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM / SIGINT, so a run stops cleanly with its state flushed."""
    stop = threading.Event()
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    for s in previous:
        signal.signal(s, handler)
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def batch_funder_option(fn: Any) -> Any:
    return click.option(
        "--batch-funder", "batch_funder", is_flag=False, flag_value="devnet", default=None,
        metavar="[ADDRESS]",
        help="Opt-in batch path: register/fund/pay many users per transaction through this "
             "BatchFunder (no value: the devnet's; setting batch_funder).")(fn)


@cli.command("import")
@click.argument("name")
@click.argument("paths", nargs=-1, metavar="[DIR]")
@dir_option
@click.option("--pins-dir", "pins_dir", metavar="DIR",
              help="Directory of pins.csv (ussd-pins; default: the data directory). A DIR "
              "holding pins.json (`create_import_pins.py --userdir USERS DIR` wrote it) is "
              "the pins directory of USERS.")
@chain_options
@custodial_legacy_options
@setting_option("--ussd-provider", setting="ussd_url", metavar="URL",
                help="Older spelling of the USSD gateway URL (setting ussd_url).")
@click.option("--batch-size", type=int, help="Users per batch of transactions.")
@click.option("--limit", type=int, help="Import at most N users this run.")
@click.option("--dry-run", is_flag=True,
              help="Print what the run would import and send (users, transactions, tokens); "
                   "send nothing.")
@click.option("--sync", "and_sync", is_flag=True,
              help="Also pay each user (= cic-seed sync NAME) in the same run: the syncer "
                   "follows the chain beside the import, paying each batch while the next "
                   "registers; exits when every imported user is paid.")
@click.option("--state-url", help="State store: sqlite path or postgresql:// URL.")
@click.option("--kdf", "keystore_kdf", type=click.Choice(["light", "production"]),
              help="KDF of the keyfiles written (eth): light scrypt n=2^8 [default] or "
                   "production n=2^18.")
@batch_funder_option
@tx_options
@click.option("--executor", "import_executor", type=click.Choice(["local", "celery"]),
              help="Where the batches run (eth): local, in this process [default], or celery, "
                   "on import workers (`cic-seed import-worker`) on any number of machines.")
@verbosity_options
@click.pass_context
@handles_errors
def import_command(ctx: click.Context, /, name: str, paths: tuple[str, ...],
                   data_dir: str | None, pins_dir: str | None, batch_size: int | None,
                   limit: int | None, dry_run: bool, and_sync: bool, state_url: str | None,
                   keystore_kdf: str | None, batch_funder: str | None,
                   import_executor: str | None, verbose: int, quiet: bool, **kw: Any) -> int:
    """Import the users of DIR (or --dir) with importer NAME (eth, cic_meta, ...)."""
    from cic_seeding.importers.registry import get_importer  # keeps -h quick

    directory = directory_of(paths, data_dir)
    if directory is not None and pins_dir is None:
        directory, pins_dir = _pins_directory(directory)
    settings = settings_from(ctx, verbose, quiet, data_dir=directory, pins_dir=pins_dir,
                             batch_size=batch_size, state_url=state_url, batch_funder=batch_funder,
                             keystore_kdf=keystore_kdf, import_executor=import_executor,
                             **chain_flags(kw), **tx_flags(kw))
    cls = get_importer(name)
    if dry_run:
        importer = cls(settings)
        try:
            click.echo(importer.dry_run(limit).render_text())
        finally:
            importer.close()
        return 0
    if and_sync:
        return _import_and_sync(settings, name, limit, quiet)
    with stop_on_signals() as stop:
        importer = cls(settings, stop=stop)
        try:
            with stage(f"import {name}", quiet, data_dir=importer.data.root) as shown:
                importer.progress_start = shown.update  # a resumed run starts where it was
                importer.progress = shown.advance
                result = importer.run(limit=limit)
                shown.ok = result.ok
        finally:
            importer.close()
    if not quiet or not result.ok:
        click.echo(result.render_text())
    return 0 if result.ok else 1


def _import_and_sync(settings: Settings, name: str, limit: int | None, quiet: bool) -> int:
    from cic_seeding.sync.run import import_and_sync
    from cic_seeding.sync.syncer import SyncOptions

    options = SyncOptions(poll=0.05, confirmations=settings.confirmations,
                          batch_size=settings.batch_size, retries=settings.rpc_retries)
    with stop_on_signals() as stop:
        imported, synced = import_and_sync(settings, name, options, limit=limit, stop=stop)
    ok = imported.ok and synced.ok
    if not quiet or not ok:
        click.echo(imported.render_text())
        click.echo(synced.render_text())
    return 0 if ok else 1


def _pins_directory(directory: str) -> tuple[str, str | None]:
    """``(data directory, pins directory)`` for a DIR given to import: a directory that
    create_import_pins.py wrote pins into on their own (its pins.json names the data
    directory, and it is not one) stands for both."""
    from cic_seeding.datadir import DataDir
    from cic_seeding.ussd.pins import pins_source

    if DataDir(directory).manifest_path.is_file():
        return directory, None
    source = pins_source(directory)
    return (source, directory) if source is not None else (directory, None)


@cli.command("import-worker")
@click.option("--devnet", "devnet_dir", help="Devnet directory (its devnet.json).")
@click.option("-p", "--rpc", "rpc_url", help="JSON-RPC URL of the node.")
@click.option("-r", "--registry", "registry_address", help="CIC registry address.")
@click.option("--broker", "import_broker_url", help="Redis URL (setting import_broker_url).")
@click.option("--queue", "import_queue", help="Celery queue (setting import_queue).")
@click.option("--key-dir", "import_worker_dir",
              help="Directory of this worker's own signing key (setting import_worker_dir).")
@click.option("--concurrency", type=int, default=2, show_default=True,
              help="Batches this worker runs at once (threads; keyfiles use every core).")
@click.option("--name", help="Worker node name, NAME@HOST (default: import-PID@HOST).")
@verbosity_options
@click.pass_context
@handles_errors
def import_worker_command(ctx: click.Context, /, concurrency: int, name: str | None, verbose: int,
                          quiet: bool, **flags: Any) -> int:
    """Run an import worker for `cic-seed import eth --executor celery` (until stopped).

    It signs with its own key (made in --key-dir on first start; the dispatcher makes it a
    writer of the AccountsIndex and gives it gas) and needs no data directory or database."""
    from cic_seeding.importers.celery_worker import run_worker

    settings = settings_from(ctx, verbose, quiet, **flags)
    level = "WARNING" if quiet else ("DEBUG" if verbose >= 2 else "INFO")
    return run_worker(settings, concurrency=concurrency, name=name, loglevel=level,
                      announce=lambda line: click.echo(line, err=True))


@cli.command("sync")
@click.argument("paths", nargs=-1, metavar="[NAME] [DIR]")
@dir_option
@chain_options
@click.option("--follow", "--keep-alive", "follow", is_flag=True,
              help="Keep following the chain until stopped (--keep-alive: the older spelling).")
@click.option("--timeout", type=float, help="Give up after this many seconds (exit 1).")
@click.option("--mint", is_flag=True, help="Mint opening balances instead of transferring.")
@click.option("--from-block", "--offset", "from_block", type=int,
              help="Rescan from this block (default: the cursor; --offset: the older spelling).")
@setting_option("--gas-amount", setting="gas_gift", kind=int, metavar="WEI",
                help="Older spelling of the gas gift (setting gas_gift).")
@click.option("--confirmations", type=int, help="Blocks to stay behind the head.")
@click.option("--poll", type=float, default=1.0, show_default=True,
              help="Seconds between rounds when idle.")
@click.option("--state-url", help="State store: sqlite path or postgresql:// URL.")
@click.option("--dry-run", is_flag=True,
              help="Print what the run would pay (users, transactions, tokens, gas); send "
                   "nothing.")
@batch_funder_option
@tx_options
@verbosity_options
@click.pass_context
@handles_errors
def sync_command(ctx: click.Context, /, paths: tuple[str, ...], data_dir: str | None,
                 follow: bool, timeout: float | None, mint: bool, from_block: int | None,
                 confirmations: int | None, poll: float, state_url: str | None, dry_run: bool,
                 batch_funder: str | None, verbose: int, quiet: bool, **kw: Any) -> int:
    """Give every registered user of importer NAME its opening balance, faucet payout and gas.

    NAME defaults to the importer that registered DIR's users (eth when none has yet). For
    cic_eth the engine pays gas and faucet when it creates the account, and the opening
    balance is a custodial transfer from the engine's signer. Exits 0 when every user of the
    data directory is done; 1 on timeout or failures."""
    from cic_seeding.sync.run import run_sync
    from cic_seeding.sync.syncer import SyncOptions

    name = _sync_name(paths, data_dir)
    directory = directory_of(paths[1:] if name else paths, data_dir)
    settings = settings_from(ctx, verbose, quiet, data_dir=directory, state_url=state_url,
                             confirmations=confirmations, batch_funder=batch_funder,
                             **chain_flags(kw), **tx_flags(kw))
    if name is None:
        name = _sync_importer(settings)
        if verbose and not quiet:
            click.echo(f"note: paying the users {name} imported into {settings.data_dir}",
                       err=True)
    if dry_run:
        from cic_seeding.sync.run import plan_sync

        click.echo(plan_sync(settings, name, mint=mint).render_text())
        return 0
    options = SyncOptions(follow=follow, timeout=timeout, poll=poll,
                          confirmations=settings.confirmations,
                          batch_size=settings.batch_size, from_block=from_block,
                          retries=settings.rpc_retries)
    with (stop_on_signals() as stop,
          stage(f"sync {name}", quiet, data_dir=settings.data_dir) as shown):
        result = run_sync(settings, name, options, mint=mint, stop=stop, progress=shown.update)
        shown.ok = result.ok
    if not quiet or not result.ok:
        click.echo(result.render_text())
    return 0 if result.ok or (follow and result.stopped) else 1


def _sync_name(paths: tuple[str, ...], data_dir: str | None) -> str | None:
    """NAME of ``sync [NAME] [DIR]``: the first of two words, or the one word unless it is a
    directory and no --dir is given (None: DIR alone)."""
    if len(paths) != 1:
        return paths[0] if paths else None
    from cic_seeding.importers.registry import importer_names

    word = paths[0]
    if word in importer_names() or data_dir is not None or not Path(word).is_dir():
        return word
    return None


def _sync_importer(settings: Settings) -> str:
    """The importer whose users the data directory's state store holds (eth: nobody yet)."""
    from cic_seeding.importers.registry import chain_importers_that_ran

    ran = chain_importers_that_ran(settings)
    if len(ran) > 1:
        raise UsageError(f"the users of {settings.data_dir} were imported by {' and '.join(ran)}",
                         hint=f"name the importer to pay: `cic-seed sync {ran[0]} DIR`")
    return ran[0] if ran else "eth"


@cli.command("importers")
def importers_command() -> None:
    """List the installed importers."""
    from cic_seeding.importers.registry import get_importer, importer_names

    for name in importer_names():
        cls = get_importer(name)
        doc = (cls.__doc__ or "").strip().splitlines()
        click.echo(f"{name}: {doc[0] if doc else ''}")


@cli.command("traffic")
@click.argument("paths", nargs=-1, metavar="[DIR]")
@dir_option
@chain_options
@click.option("--batch-size", type=int, help="Transfers per batch.")
@click.option("--timeout", type=float, default=600.0, show_default=True,
              help="Give up after this many seconds (a rerun resumes).")
@click.option("--state-url", help="State store: sqlite path or postgresql:// URL.")
@tx_options
@verbosity_options
@click.pass_context
@handles_errors
def traffic_command(ctx: click.Context, /, paths: tuple[str, ...], data_dir: str | None,
                    batch_size: int | None, timeout: float, state_url: str | None, verbose: int,
                    quiet: bool, **kw: Any) -> int:
    """Replay DIR's transactions.csv as transfers between imported sovereign users."""
    from cic_seeding.traffic import replay_traffic

    settings = settings_from(ctx, verbose, quiet, data_dir=directory_of(paths, data_dir),
                             batch_size=batch_size,
                             state_url=state_url, **chain_flags(kw), **tx_flags(kw))
    with (stop_on_signals() as stop,
          stage("traffic", quiet, unit="transfers", data_dir=settings.data_dir) as shown):
        result = replay_traffic(settings, stop=stop, timeout=timeout, progress=shown.update)
        shown.ok = result.ok
    if not quiet or not result.ok:
        click.echo(result.render_text())
    return 0 if result.ok else 1
