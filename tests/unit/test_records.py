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
