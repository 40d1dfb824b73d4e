"""records/address.py against eth_utils: the same EIP-55 form, the same verdict on mixed case."""

from __future__ import annotations

from eth_utils import is_checksum_address, to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from cic_seeding.records.address import case_ok, checksummed


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(min_size=20, max_size=20), flips=st.lists(st.integers(0, 39), max_size=3),
       case=st.sampled_from(["lower", "upper", "eip55"]))
def test_it_answers_as_eth_utils(raw: bytes, flips: list[int], case: str) -> None:
    summed = to_checksum_address(raw)
    hex_part = {"lower": summed[2:].lower(), "upper": summed[2:].upper(),
                "eip55": summed[2:]}[case]
    for i in flips:  # a mistyped case, as a person copying an address makes it
        hex_part = hex_part[:i] + hex_part[i].swapcase() + hex_part[i + 1:]
    address = "0x" + hex_part
    assert checksummed(address) == summed
    mixed = hex_part not in (hex_part.lower(), hex_part.upper())
    assert case_ok(address) == (not mixed or is_checksum_address(address))
