"""Pure parts of USSD: seeded PINs, PIN hashes, input parsing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cic_devnet.ussd.menus import format_amount, normal_phone, parse_amount, valid_name
from cic_seeding.generate.keys import preferred_language
from cic_seeding.ussd.pins import PIN_RE, check_pin, hash_pin, seeded_pin
from cic_seeding.ussd.texts import LANGUAGES, text


@given(st.integers(min_value=0, max_value=2**63), st.integers(min_value=0, max_value=10**7))
def test_seeded_pins_are_four_digits_and_deterministic(seed: int, index: int) -> None:
    pin = seeded_pin(seed, index)
    assert PIN_RE.fullmatch(pin) and pin == seeded_pin(seed, index)
    assert preferred_language(seed, index) in LANGUAGES


def test_seeded_pins_differ_between_users_and_seeds() -> None:
    assert len({seeded_pin(1, i) for i in range(200)}) > 150
    assert [seeded_pin(1, i) for i in range(20)] != [seeded_pin(2, i) for i in range(20)]


@settings(max_examples=10, deadline=None)
@given(st.from_regex(r"[0-9]{4}", fullmatch=True))
def test_pin_hashes_are_bcrypt_and_check(pin: str) -> None:
    hashed = hash_pin(pin, rounds=4)
    assert hashed.startswith("$2") and pin not in hashed
    assert check_pin(pin, hashed)
    assert not check_pin(f"{(int(pin) + 1) % 10000:04d}", hashed)
    assert not check_pin(pin, None) and not check_pin(pin, "not a hash")


def test_input_parsing() -> None:
    assert normal_phone("0712345678") == "+254712345678"
    assert normal_phone("254712345678") == "+254712345678"
    assert normal_phone("12") is None
    assert parse_amount("1.5", 6) == 1_500_000 and parse_amount("0.0000001", 6) is None
    assert parse_amount("-1", 6) is None and parse_amount("NaN", 6) is None
    assert parse_amount("1e99", 6) is None
    assert format_amount(1_500_000, 6) == "1.5" and format_amount(0, 6) == "0"
    assert valid_name("Mary-Jane O'Neil") and not valid_name("K9") and not valid_name(" ")


def test_every_screen_exists_in_both_languages() -> None:
    from cic_seeding.ussd import texts

    assert set(texts._TEXTS["en"]) == set(texts._TEXTS["sw"])
    assert text("main", "xx") == text("main", "en")
