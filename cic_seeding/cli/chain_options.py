"""Options every command that talks to a chain shares: ``--devnet DIR`` or ``-p/-r/-y``, and
``-i/--chain-spec`` (as the original CIC scripts spelled it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from cic_seeding.cli.legacy import chain_legacy_options

F = TypeVar("F", bound=Callable[..., Any])

CHAIN_FLAGS = ("devnet_dir", "rpc_url", "registry_address", "keyfile", "token_symbol",
               "chain_spec")


def chain_options(fn: F) -> F:
    """Adds the chain options; they arrive as keyword arguments named like the settings."""
    fn = chain_legacy_options(fn)
    for decorator in reversed([
        click.option("--devnet", "devnet_dir", help="Devnet directory (its devnet.json)."),
        click.option("-p", "--rpc", "--provider", "rpc_url", help="JSON-RPC URL of the node."),
        click.option("-r", "--registry", "--registry-address", "registry_address",
                     help="CIC registry address."),
        click.option("-y", "--keyfile", "--key-file", "keyfile",
                     help="v3 keyfile of the signer."),
        click.option("--token-symbol", "token_symbol",
                     help="Token to use (default: the registry's DefaultToken)."),
        click.option("-i", "--chain-spec", "chain_spec", metavar="SPEC",
                     help="Chain spec engine:fork:network_id:name of the node (default: the "
                     "data directory's manifest, else the devnet's; setting chain_spec)."),
    ]):
        fn = decorator(fn)
    return fn


def chain_flags(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pops the chain options out of a command's keyword arguments."""
    return {k: kwargs.pop(k) for k in CHAIN_FLAGS if k in kwargs}


TX_FLAGS = ("mining", "tx_resend_after", "tx_max_unmined")


def tx_options(fn: F) -> F:
    """Options of commands that send transactions (import, sync, traffic): how the node mines
    and how patient the outbox is with it."""
    for decorator in reversed([
        click.option("--mining", type=click.Choice(["explicit", "auto", "detect"]),
                     help="How the node mines: explicit (only when asked: our devnet), auto (by "
                     "itself: never asked), detect [default: ask the node]."),
        click.option("--resend-after", "tx_resend_after", type=float, metavar="SECONDS",
                     help="Seconds without a receipt before the node is asked about a "
                     "transaction (lost: sent again; underpriced: fee bump)."),
        click.option("--max-unmined", "tx_max_unmined", type=int, metavar="N",
                     help="Transactions of one signer a self-mining node holds unmined at "
                     "once (0: no limit)."),
    ]):
        fn = decorator(fn)
    return fn


def tx_flags(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pops the transaction options out of a command's keyword arguments."""
    return {k: kwargs.pop(k) for k in TX_FLAGS if k in kwargs}
