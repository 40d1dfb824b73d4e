from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from cic_seeding.records.phone import is_e164, kenyan_mobile, permute
from cic_seeding.records.pointers import person_pointer, phone_pointer
from cic_seeding.records.vcard import VCard, decode_vcard, encode_vcard

names = st.text(min_size=1, max_size=30).filter(lambda s: "\r" not in s and "\n" not in s)


@given(given=names, family=names, email=st.none() | st.emails())
def test_vcard_round_trip(given: str, family: str, email: str | None) -> None:
    card = VCard(given=given, family=family, phone="+254712345678", email=email)
    assert decode_vcard(encode_vcard(card)) == card


@given(st.integers(min_value=0, max_value=10**8 - 1), st.binary(min_size=1, max_size=32))
def test_phone_permutation_stays_in_range(index: int, key: bytes) -> None:
    value = permute(key, index)
    assert 0 <= value < 10**8
    assert is_e164(kenyan_mobile(key, index))


def test_permutation_is_injective_on_a_block() -> None:
    key = b"seed"
    assert len({permute(key, i) for i in range(50_000)}) == 50_000


def test_pointers_follow_the_cic_formula() -> None:
    address = "0x" + "ab" * 20
    expected = hashlib.sha256(bytes.fromhex("ab" * 20) + b":cic.person").hexdigest()
    assert person_pointer(address) == expected
    assert phone_pointer("+254712345678") == hashlib.sha256(b"+254712345678:cic.phone").hexdigest()


def _outcome(fn, value):  # type: ignore[no-untyped-def]
    try:
        return "ok", fn(value)
    except ValueError:
        return "refused", None


_HEXISH = st.text(st.sampled_from(list("0123456789abcdefABCDEFxX g\u00e9")), max_size=44)
_ADDRESSISH = st.builds(lambda prefix, digits: prefix + digits, st.sampled_from(["0x", "0X", ""]),
                        st.text(st.sampled_from(list("0123456789abcdefABCDEF")),
                                min_size=38, max_size=41))


@given(st.one_of(_HEXISH, _ADDRESSISH))
def test_address_bytes_reads_what_eth_utils_reads(address: str) -> None:
    """Pointers are keys of stored documents: the fast hex reading must accept and refuse
    exactly what eth_utils' to_bytes(hexstr=...) did, with the same bytes."""
    from eth_utils import to_bytes

    from cic_seeding.records.pointers import _address_bytes

    def reference(value: str) -> bytes:
        raw = to_bytes(hexstr=value)
        if len(raw) != 20:
            raise ValueError(value)
        return raw

    assert _outcome(_address_bytes, address) == _outcome(reference, address)


def _nesting_by_bytes(data: bytes) -> int:
    """The byte-by-byte scan the regular-expression version replaced (the reference)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == ord("\\"):
                escaped = True
            elif byte == ord('"'):
                in_string = False
        elif byte == ord('"'):
            in_string = True
        elif byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        elif byte in b"]}":
            depth -= 1
    return deepest


@given(st.binary(max_size=60) | st.text(st.sampled_from(list('[]{}"\\a\n:,')), max_size=60)
       .map(lambda t: t.encode()))
def test_json_nesting_scan_matches_the_byte_scan(data: bytes) -> None:
    from cic_seeding.records.jsonsafe import nesting

    assert nesting(data) == _nesting_by_bytes(data)
