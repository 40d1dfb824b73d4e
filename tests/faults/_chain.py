"""What a data directory left on a devnet's chain, read back for the bad-input assertions."""

from __future__ import annotations

from pathlib import Path

from cic_devnet.devnet import Devnet
from cic_seeding.chain.connect import connect
from cic_seeding.chain.registry import ACCOUNTS_INDEX, TOKEN, CicNetwork
from tests.conftest import devnet_settings


def network(devnet: Devnet) -> CicNetwork:
    """The devnet's contracts, read-only."""
    return connect(devnet_settings(devnet, Path("unused")), signer=False)


def registered(devnet: Devnet, addresses: list[str]) -> set[str]:
    """Those of ``addresses`` the devnet's AccountsIndex has."""
    net = network(devnet)
    have = net.client.call_many([(net.accounts_index, ACCOUNTS_INDEX.fn("have"), (a,))
                                 for a in addresses])
    return {a for a, h in zip(addresses, have, strict=True) if h is True}


def token_balances(devnet: Devnet, addresses: list[str]) -> dict[str, int]:
    """The default token's balance of each of ``addresses``."""
    net = network(devnet)
    token = net.token()
    got = net.client.call_many([(token.address, TOKEN.fn("balanceOf"), (a,)) for a in addresses])
    return dict(zip(addresses, got, strict=True))
