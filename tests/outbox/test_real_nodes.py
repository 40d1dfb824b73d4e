"""Seeding through the CLI (``-p -r -y``) against nodes that mine by themselves: anvil's
automine (which stalls and loses transactions when its pool floods) and a node mining a block a
second. Import, sync and verify must all exit 0, and the chain's own logs must show every user
registered once and paid once. The run at 3,000 users is the node matrix's full command:
``CIC_NODE_MATRIX_USERS=3000 python -m pytest -q tests/nodes/test_node_matrix.py``."""

from __future__ import annotations

import time
from pathlib import Path

from tests.outbox.nodes import (
    Node,
    assert_each_paid_once,
    make_data,
    seed_cli,
    self_mining_node,
    verify_cli,
)


def seed_and_check(node: Node, directory: Path, users: int, seed: int) -> dict[str, object]:
    data = make_data(directory, users, seed)
    started = time.monotonic()
    imported = seed_cli(node, data, "import", "eth")
    import_s = time.monotonic() - started
    synced = seed_cli(node, data, "sync", "eth")
    sync_s = time.monotonic() - started - import_s
    verify_cli(node, data)
    assert_each_paid_once(node, data)
    assert imported["sent"] >= users and synced["sent"] >= 2 * users
    report = {"users": users, "import_s": round(import_s, 1), "sync_s": round(sync_s, 1),
              "import": imported, "sync": synced}
    print(f"\nself-mining node: {report}")  # the measured run, for the record (pytest -s)
    return report


def test_500_users_on_an_automining_anvil(tmp_path: Path) -> None:
    with self_mining_node(tmp_path / "node") as node:
        seed_and_check(node, tmp_path, 500, seed=500)


def test_users_on_a_node_mining_a_block_a_second(tmp_path: Path) -> None:
    with self_mining_node(tmp_path / "node", block_time=1) as node:
        seed_and_check(node, tmp_path, 60, seed=61)
