"""Fixtures of the syncer's devnet tests: a JSON-RPC proxy in front of the test's devnet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cic_devnet.deploy import DeployOptions
from cic_devnet.devnet import Devnet
from tests.conftest import start_devnet
from tests.sync.rpc_proxy import RpcProxy


@pytest.fixture
def proxy(devnet: Devnet) -> Iterator[RpcProxy]:
    """A proxy in front of ``devnet``'s anvil; passes everything through until told not to."""
    server = RpcProxy(devnet.rpc_url)
    try:
        yield server
    finally:
        server.stop()
    assert server.errors == [], "a before_mine hook failed"


@pytest.fixture
def devnet_without_faucet(tmp_path: Path) -> Iterator[Devnet]:
    """A fresh devnet whose faucet pays nothing (deployed with a payout of 0)."""
    yield from start_devnet(tmp_path / "devnet", options=DeployOptions(faucet_amount_units=0))
