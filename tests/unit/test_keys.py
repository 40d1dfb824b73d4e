"""Everything a user gets from (seed, index): checked for 100,000 indices without writing files."""

from __future__ import annotations

from eth_utils import to_checksum_address
from hypothesis import given
from hypothesis import strategies as st

from cic_seeding.generate.keys import (
    address_of,
    derive_private_key,
    opening_balance,
    phone_key,
    raw_address,
    user_address,
    user_phone,
)
from cic_seeding.records.phone import KENYA_MOBILE_PREFIX, MAX_USERS, is_e164, permute

N = 100_000
seeds = st.integers(min_value=-(2**127), max_value=2**127 - 1)


def test_100k_users_have_100k_distinct_phones() -> None:
    key = phone_key(2024)  # the key the generator derives from the seed
    phones = {user_phone(2024, i, key) for i in range(N)}
    assert len(phones) == N
    assert all(p.startswith(KENYA_MOBILE_PREFIX) and len(p) == 13 and is_e164(p) for p in phones)


def test_100k_users_have_100k_distinct_addresses() -> None:
    # raw bytes: the checksummed spelling is a bijection of them, and skipping it halves the time
    assert len({raw_address(derive_private_key(2024, i)) for i in range(N)}) == N


def test_last_indices_of_the_phone_space_stay_distinct() -> None:
    key = phone_key(7)
    top = range(MAX_USERS - 20_000, MAX_USERS)
    assert len({permute(key, i) for i in top}) == len(top)


@given(seeds, st.integers(min_value=0, max_value=MAX_USERS - 1))
def test_derivations_are_functions_of_seed_and_index(seed: int, index: int) -> None:
    key = derive_private_key(seed, index)
    assert key == derive_private_key(seed, index) and len(key) == 32
    assert user_address(seed, index) == address_of(key) == to_checksum_address(raw_address(key))
    assert user_phone(seed, index) == user_phone(seed, index, phone_key(seed))


def test_other_seed_other_users() -> None:
    assert {user_address(1, i) for i in range(50)}.isdisjoint(user_address(2, i) for i in range(50))
    assert [user_phone(1, i) for i in range(50)] != [user_phone(2, i) for i in range(50)]


@given(seeds, st.integers(min_value=0, max_value=10**8),
       st.integers(min_value=0, max_value=2**256 - 1))
def test_opening_balance_stays_within_the_threshold(seed: int, index: int, top: int) -> None:
    assert 0 <= opening_balance(seed, index, top) <= top


def test_opening_balances_spread_over_the_range() -> None:
    values = [opening_balance(3, i, 100) for i in range(5_000)]
    assert set(values) == set(range(101))  # every value of [0, 100] occurs
    assert 45 < sum(values) / len(values) < 55
