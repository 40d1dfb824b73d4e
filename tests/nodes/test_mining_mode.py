"""Which nodes the toolkit asks for blocks: only those that mine on request alone.

anvil ``--block-time 1`` answers ``anvil_getAutomine`` with false, like ``--no-mining``, but
mines every second by itself; asked for blocks, it got extra ones it had not been asked for by
its user, and the README promises that a node that mines by itself is never asked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cic_seeding.chain.connect import mines_on_request
from cic_seeding.chain.rpc import JsonRpc
from tests.nodes.nodes import running_node


@pytest.mark.parametrize(("kind", "on_request"), [
    ("anvil-automine", False), ("anvil-block-time", False), ("anvil-no-mining", True)])
def test_anvil_is_asked_for_blocks_only_when_it_mines_on_request(tmp_path: Path, kind: str,
                                                                  on_request: bool) -> None:
    with running_node(kind, tmp_path) as node:
        assert mines_on_request(JsonRpc(node.url)) is on_request


def test_a_hardhat_node_is_asked_once_its_automine_is_off(tmp_path: Path) -> None:
    with running_node("hardhat", tmp_path) as node:
        rpc = JsonRpc(node.url)
        assert mines_on_request(rpc) is False  # hardhat's default: a block per transaction
        rpc.call("evm_setAutomine", [False])
        assert mines_on_request(rpc) is True  # (hardhat_getAutomine: it knows no anvil_*)
