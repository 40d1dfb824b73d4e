"""``tx/`` filled from a node by hash (:class:`cic_seeding.outbox.archive.TxArchive`): the
transactions another signer made for our users, saved as the outbox saves ours.

Against anvil, which serves ``eth_getRawTransactionByHash``, and the Hardhat node, which does
not (the fields of ``eth_getTransactionByHash`` are encoded again): a legacy, an EIP-2930 and
an EIP-1559 transaction each end up under their hash, their bytes hashing to the name; one the
node does not have costs one log line; a rerun asks for nothing it has.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_utils import keccak

from cic_devnet.anvil import dev_key, start_anvil
from cic_seeding.chain.rpc import JsonRpc
from cic_seeding.chain.signer import Signer
from cic_seeding.chain.tx import Call
from cic_seeding.datadir import DataDir
from cic_seeding.outbox import TxArchive
from cic_seeding.outbox.archive import encode_signed, save
from tests.nodes.nodes import running_node

UNKNOWN = "0x" + "ab" * 32
#: a second dev account: the recipient and the access list's contract
OTHER = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"


@pytest.fixture(scope="module")
def anvil_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    anvil = start_anvil(chain_id=8996, automine=True,
                        log_file=tmp_path_factory.mktemp("anvil") / "anvil.log")
    try:
        yield anvil.url
    finally:
        anvil.stop()


def send_three(rpc: JsonRpc) -> dict[str, str | None]:
    """A legacy and a type-2 transaction we sign, and a type-1 one (with an access list) the
    node signs with its unlocked dev account: ``{hash: our raw or None}``, once mined."""
    signer = Signer.from_key(dev_key(0))
    chain_id = int(rpc.call("eth_chainId"), 16)
    price = 2 * int(rpc.call("eth_gasPrice"), 16)
    nonce = int(rpc.call("eth_getTransactionCount", [signer.address, "pending"]), 16)
    call = Call(OTHER, b"\x01\x02", value=7, gas=60_000)
    ours = [signer.sign(call, nonce=nonce, gas_price=price, chain_id=chain_id),
            signer.sign(call, nonce=nonce + 1, gas_price=price, chain_id=chain_id, tip=1)]
    sent: dict[str, str | None] = {}
    for tx in ours:
        assert rpc.call("eth_sendRawTransaction", [tx.raw]) == tx.tx_hash
        sent[tx.tx_hash] = tx.raw
    typed = rpc.call("eth_sendTransaction", [{
        "from": signer.address, "to": OTHER, "value": hex(3), "gas": hex(60_000),
        "gasPrice": hex(price), "nonce": hex(nonce + 2),
        "accessList": [{"address": OTHER, "storageKeys": ["0x" + "00" * 31 + "01"]}]}])
    sent[str(typed)] = None
    kinds = []
    for tx_hash in sent:
        found = rpc.call("eth_getTransactionByHash", [tx_hash])
        assert found["blockNumber"] is not None, "not mined"
        kinds.append(int(found["type"], 16))
    assert kinds == [0, 2, 1]
    return sent


def check_saved(archive: TxArchive, sent: dict[str, str | None], root: Path) -> None:
    """Each of ``sent`` under its hash, as text the way the outbox writes it."""
    outbox_style = DataDir(root / "outbox-style").tx
    for tx_hash, raw in sent.items():
        text = archive.tx.get(tx_hash)
        assert text.startswith(b"0x")
        assert "0x" + keccak(bytes.fromhex(text[2:].decode())).hex() == tx_hash
        if raw is not None:  # ours: the very bytes the outbox saves when it signs them
            save(outbox_style, [(tx_hash, raw)])
            assert text == outbox_style.get(tx_hash)


def test_anvil_raw_transactions_are_saved_and_a_rerun_asks_for_none(
        anvil_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rpc = JsonRpc(anvil_url)
    sent = send_three(rpc)
    for tx_hash in sent:  # the encoder agrees with the node's own bytes, for every type
        assert encode_signed(rpc.call("eth_getTransactionByHash", [tx_hash])) == \
            bytes.fromhex(rpc.call("eth_getRawTransactionByHash", [tx_hash])[2:])

    archive = TxArchive(DataDir(tmp_path / "data").tx, rpc)
    wanted = {**{h: f"payment {i}" for i, h in enumerate(sent)}, UNKNOWN: "the lost one"}
    with caplog.at_level(logging.WARNING, logger="cic_seeding.outbox.archive"):
        got = archive.fetch(wanted)
    assert (got.saved, got.had, got.missing) == (3, 0, 1)
    check_saved(archive, sent, tmp_path)
    assert [r.getMessage() for r in caplog.records] == [
        f"tx/: 1 transactions not archived: {UNKNOWN} (the lost one: the node does not have "
        "it)"]
    assert sorted(archive.tx) == sorted(h[2:].upper() for h in sent)

    before = {h: archive.tx.get(h) for h in sent}
    again = archive.fetch({h.upper().replace("0X", "0x"): "again" for h in sent})
    assert (again.saved, again.had, again.missing) == (0, 3, 0)
    assert {h: archive.tx.get(h) for h in sent} == before


def test_a_node_without_raw_transactions_gets_them_encoded_from_their_fields(
        tmp_path: Path) -> None:
    with running_node("hardhat", tmp_path / "node") as node:
        rpc = JsonRpc(node.url)
        sent = send_three(rpc)
        with pytest.raises(Exception, match="eth_getRawTransactionByHash"):
            rpc.call("eth_getRawTransactionByHash", [next(iter(sent))])
        archive = TxArchive(DataDir(tmp_path / "data").tx, rpc)
        got = archive.fetch({**{h: "payment" for h in sent}, UNKNOWN: "the lost one"})
        assert (got.saved, got.had, got.missing) == (3, 0, 1)
        check_saved(archive, sent, tmp_path)
