"""The BatchReader chain: hand-packed call data equals eth-abi's; a node ignoring overrides is
read per address instead (the real node is in tests/e2e/test_verify_chain.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from eth_abi import encode
from hypothesis import given
from hypothesis import strategies as st

from cic_seeding.chain.abi import artifact
from cic_seeding.chain.batch_reader import (
    READER_ADDRESS,
    BatchReaderChain,
    decode_bytes_array,
    decode_uint_array,
    encode_have_many,
    encode_native_balances,
    encode_next_times,
    encode_token_balances,
)
from cic_seeding.chain.registry import FAUCET

READER = artifact("BatchReader")
addresses = st.lists(st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex()),
                     max_size=12)
one = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex().upper())


@given(index=one, users=addresses)
def test_call_data_is_abi_encoding(index: str, users: list[str]) -> None:
    assert encode_have_many(index, users) == READER.encode("haveMany", index, users)
    assert encode_token_balances(index, users) == READER.encode("tokenBalances", index, users)
    assert encode_native_balances(users) == READER.encode("nativeBalances", users)
    calls = [FAUCET.encode("nextTime", u) for u in users]
    assert encode_next_times(index, users) == READER.encode("batchRead", [index] * len(users),
                                                            calls)


@given(values=st.lists(st.integers(0, 2**256 - 1), max_size=20),
       blobs=st.lists(st.binary(max_size=70), max_size=20))
def test_results_decode_like_abi(values: list[int], blobs: list[bytes]) -> None:
    assert decode_uint_array(encode(["uint256[]"], [values])) == values
    data = encode(["bool[]", "bytes[]"], [[True] * len(blobs), blobs])
    assert decode_uint_array(data, 0) == [1] * len(blobs)
    assert decode_bytes_array(data, 32) == blobs


def test_a_bad_address_is_refused() -> None:
    with pytest.raises(ValueError, match="not a 20-byte address"):
        encode_native_balances(["0x1234"])


class _Rpc:
    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.sent: list[Any] = []

    def batch(self, requests: Sequence[Any]) -> list[Any]:
        self.sent += requests
        return [self.answer] * len(requests)


class _Plain:
    """A NetworkReader stand-in: answers every question itself."""

    token_address, token_symbol, token_decimals = "0x" + "11" * 20, "GFT", 6

    def __init__(self, answer: str) -> None:
        self.client = type("C", (), {"rpc": _Rpc(answer)})()

    def have(self, a: Sequence[str]) -> dict[str, bool]:
        return {x: True for x in a}

    def native_balances(self, a: Sequence[str]) -> dict[str, int]:
        return {x: 7 for x in a}


def test_a_node_ignoring_the_override_is_read_per_address() -> None:
    plain = _Plain("0x")  # no code at READER_ADDRESS: the empty answer of a plain eth_call
    chain = BatchReaderChain(plain)  # type: ignore[arg-type]
    assert chain.overrides is False
    (probe,) = plain.client.rpc.sent
    assert probe[1][0]["to"] == READER_ADDRESS and READER_ADDRESS in probe[1][2]
    users = ["0x" + "22" * 20]
    assert chain.have(users) == {users[0]: True}
    assert chain.native_balances(users) == {users[0]: 7}
    assert len(plain.client.rpc.sent) == 1  # nothing more went to the node


def test_a_node_running_the_override_is_read_in_one_call() -> None:
    plain = _Plain("0x" + encode(["uint256[]"], [[]]).hex())
    chain = BatchReaderChain(plain, chunk=2)  # type: ignore[arg-type]
    assert chain.overrides is True
    plain.client.rpc.answer = "0x" + encode(["uint256[]"], [[5, 6]]).hex()
    users = ["0x" + f"{i:02x}" * 20 for i in range(4)]
    assert chain.native_balances(users) == dict(zip(users, [5, 6, 5, 6], strict=True))
    assert len(plain.client.rpc.sent) == 1 + 2  # probe, then 2 chunks in one batch
