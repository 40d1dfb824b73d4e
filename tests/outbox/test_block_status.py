"""The outbox's receipts from block traces (:mod:`cic_seeding.outbox._blocks`) against a real
anvil that mines when asked: the same status and block as ``eth_getTransactionReceipt`` for
every transaction, a reverted one included; the chain put back by ``evm_revert`` and mined
again is read again, not answered from what was read before; a node without ``trace_block``
answers per hash."""

from __future__ import annotations

import http.server
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cic_devnet.anvil import AnvilProcess, dev_key, start_anvil
from cic_seeding.chain.abi import artifact
from cic_seeding.chain.client import ChainClient
from cic_seeding.chain.registry import ACCOUNTS_INDEX
from cic_seeding.chain.rpc import JsonRpc
from cic_seeding.chain.signer import Signer
from cic_seeding.chain.tx import Call
from cic_seeding.outbox import ClientNode
from cic_seeding.outbox._blocks import TRACE_FROM, BlockStatus
from tests.helpers import http_server


@pytest.fixture
def anvil(tmp_path: Path) -> Iterator[AnvilProcess]:
    node = start_anvil(chain_id=8996, accounts=2, log_file=tmp_path / "anvil.log")
    yield node
    node.stop()


def client_of(node: AnvilProcess, account: int) -> ChainClient:
    return ChainClient(JsonRpc(node.url), signer=Signer.from_key(dev_key(account)),
                       explicit_mining=True)


def signed_block(node: AnvilProcess) -> list[str]:
    """One block of 40 transactions from two senders: value transfers, AccountsIndex adds by
    its owner (succeed) and one add by another account (reverts)."""
    owner, other = client_of(node, 0), client_of(node, 1)
    index = owner.transact(Call(None, artifact("AccountsIndex").deploy_data(), gas=3_000_000),
                           "deploy").contract_address
    assert index
    calls = []
    for i in range(30):
        target = f"0x{(0xB10C << 140) + i:040x}"
        calls.append(Call(target, b"", value=1, gas=21_000) if i % 2
                     else Call(index, ACCOUNTS_INDEX.encode("add", target), gas=120_000))
    first = owner.pending_nonce()
    raws = [owner.sign(c, first + n) for n, c in enumerate(calls)]
    bad = other.sign(Call(index, ACCOUNTS_INDEX.encode("add", f"0x{0xBAD:040x}"),
                          gas=120_000), other.pending_nonce())
    raws.append(bad)
    errors = owner.rpc.batch([("eth_sendRawTransaction", [s.raw]) for s in raws])
    assert not any(isinstance(e, Exception) for e in errors), errors
    owner.mine()
    return [s.tx_hash for s in raws]


def test_trace_receipts_match_the_nodes_receipts(anvil: AnvilProcess) -> None:
    hashes = signed_block(anvil)
    client = client_of(anvil, 0)
    expected = client.receipts(hashes)
    assert len(expected) == len(hashes)
    assert not expected[hashes[-1]].ok and expected[hashes[0]].ok  # the revert is in there
    status = BlockStatus(client.rpc, trace_from=1)
    got = status.lookup(hashes)
    assert {h: (r.ok, r.block_number) for h, r in got.items()} == \
        {h: (r.ok, r.block_number) for h, r in expected.items()}
    node = ClientNode(client)
    assert node.blocks is not None
    node.blocks.trace_from = 1
    assert {h: (r.ok, r.block_number) for h, r in node.receipts(hashes).items()} == \
        {h: (r.ok, r.block_number) for h, r in expected.items()}
    assert len(node.blocks) >= len(hashes)  # answered from the traces, not per hash


def test_a_block_of_few_transactions_is_left_to_per_hash_receipts(anvil: AnvilProcess) -> None:
    hashes = signed_block(anvil)  # 31 transactions
    client = client_of(anvil, 0)
    status = BlockStatus(client.rpc, trace_from=32)
    assert status.lookup(hashes) == {} and len(status) == 0
    node = ClientNode(client)
    assert len(node.receipts(hashes)) == len(hashes)  # per hash


def test_a_reverted_chain_is_read_again(anvil: AnvilProcess) -> None:
    client = client_of(anvil, 0)
    snapshot = client.rpc.call("evm_snapshot")
    hashes = signed_block(anvil)
    status = BlockStatus(client.rpc, trace_from=1)
    assert len(status.lookup(hashes)) == len(hashes)
    assert client.rpc.call("evm_revert", [snapshot])
    client.mine(3)  # the same heights again, other blocks, none of those transactions
    assert status.lookup(hashes) == {}
    assert client.receipts(hashes) == {}


def test_blocks_past_the_limit_are_dropped_oldest_first(anvil: AnvilProcess) -> None:
    hashes = signed_block(anvil)  # the deploy's block, then the block of 31
    client = client_of(anvil, 0)
    status = BlockStatus(client.rpc, keep=10, trace_from=1)
    assert status.lookup(hashes) == {}  # 31 in one block: more than it keeps
    hashes2 = signed_block(anvil)
    node_answer = client.receipts(hashes2)
    status = BlockStatus(client.rpc, keep=40, trace_from=1)
    got = status.lookup(hashes + hashes2)
    assert set(got) == set(hashes2) and len(status) <= 40
    assert {h: r.ok for h, r in got.items()} == {h: r.ok for h, r in node_answer.items()}


def test_a_node_without_trace_block_answers_per_hash() -> None:
    """A JSON-RPC server that knows no trace_block (as the Hardhat node and ganache answer)
    turns the index off; receipts still come, per hash."""
    calls: list[str] = []

    def answer(request: dict[str, Any]) -> dict[str, Any]:
        calls.append(request["method"])
        result: object = None
        if request["method"] == "eth_blockNumber":
            result = "0x5"
        elif request["method"] == "eth_getBlockByNumber":  # a block worth reading
            result = {"hash": "0x" + "ab" * 32,
                      "transactions": [f"0x{i:064x}" for i in range(TRACE_FROM)]}
        elif request["method"] == "trace_block":
            return {"jsonrpc": "2.0", "id": request["id"],
                    "error": {"code": -32601, "message": "Method not found"}}
        elif request["method"] == "eth_getTransactionReceipt":
            result = {"blockNumber": "0x4", "status": "0x1"}
        return {"jsonrpc": "2.0", "id": request["id"], "result": result}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            out = [answer(r) for r in body] if isinstance(body, list) else answer(body)
            data = json.dumps(out).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    with http_server(Handler) as url:
        node = ClientNode(ChainClient(JsonRpc(url), explicit_mining=True))
        got = node.receipts(["0xab"])
        assert got["0xab"].block_number == 4 and got["0xab"].ok
        assert node.blocks is not None and not node.blocks.usable
        calls.clear()
        assert node.receipts(["0xcd"])["0xcd"].ok
        assert calls == ["eth_getTransactionReceipt"]
