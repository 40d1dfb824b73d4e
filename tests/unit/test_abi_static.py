"""The hand encoder of addresses, uintN and lists of them (chain/abi.py ``_simple_words``)
against eth-abi: where it answers, its bytes are eth-abi's; what it declines, eth-abi encodes or
refuses."""

from __future__ import annotations

import random
from typing import Any

import pytest
from eth_abi import encode
from eth_utils import to_checksum_address

from cic_seeding.chain.abi import _simple_words, artifact


def _address(rng: random.Random) -> str:
    plain = "0x" + "".join(rng.choice("0123456789abcdef") for _ in range(40))
    summed = to_checksum_address(plain)
    i = rng.randrange(2, 42)
    return rng.choice([plain, "0x" + plain[2:].upper(), summed,
                       summed[:i] + summed[i].swapcase() + summed[i + 1:],  # bad checksum
                       plain[:-1], plain + "0", "0X" + plain[2:], "0xg" + plain[3:], plain[2:],
                       bytes.fromhex(plain[2:])])


def _value(rng: random.Random, t: str) -> Any:
    if t == "address":
        return _address(rng)
    return rng.choice([0, 1, 255, 256, 2**64 - 1, 2**64, 2**256 - 1, 2**256, -1, True, "1", 1.0,
                       rng.getrandbits(256)])


def _arg(rng: random.Random, t: str) -> Any:
    if not t.endswith("[]"):
        return _value(rng, t)
    items = [_value(rng, t[:-2]) if rng.random() < 0.2 else
             (_address(rng) if t == "address[]" else rng.getrandbits(8))
             for _ in range(rng.choice([0, 1, 2, 5, 100]))]
    return rng.choice([items, tuple(items), items, "0x" + "ab" * 20, None])


def test_it_agrees_with_eth_abi_wherever_it_answers() -> None:
    rng = random.Random(21)
    answered = lists = 0
    for _ in range(5000):
        types = rng.choice([("address",), ("address", "uint256"), ("uint8",), ("uint64",
                                                                               "address"),
                            ("address", "address[]"), ("address[]", "uint256[]"),
                            ("address", "address", "address[]", "uint256[]"), ("uint8[]",)])
        args = tuple(_arg(rng, t) for t in types)
        fast = _simple_words(types, args)
        try:
            reference: bytes | None = encode(list(types), list(args))
        except Exception:
            reference = None
        if fast is not None:
            answered += 1
            lists += any(t.endswith("[]") for t in types)
            assert fast == reference, (types, args)
    assert answered > 500 and lists > 200  # the cases the seeding calls make are taken by it


@pytest.mark.parametrize("types", [("string",), ("address[2]",), ("address[][]",), ("bytes32",),
                                   ("int256",)])
def test_other_types_are_left_to_eth_abi(types: tuple[str, ...]) -> None:
    assert _simple_words(types, ("x",)) is None


def test_a_seeding_call_encodes_as_before() -> None:
    transfer = artifact("GiftableToken").fn("transfer")
    to = to_checksum_address("0x" + "ab" * 20)
    assert transfer.encode(to, 5) == transfer.selector + encode(["address", "uint256"], [to, 5])
    give = artifact("BatchFunder").fn("giveValue")
    assert give.encode([to] * 3, [1, 2, 3]) == \
        give.selector + encode(["address[]", "uint256[]"], [[to] * 3, [1, 2, 3]])
