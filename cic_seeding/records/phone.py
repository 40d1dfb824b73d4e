"""E.164 phone numbers, and a keyed bijection from user index to a unique Kenyan mobile number."""

from __future__ import annotations

import hashlib
import re

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
KENYA_MOBILE_PREFIX = "+2547"
_HALF = 10_000  # the 8 free digits split into two halves of 4 for the Feistel network
_DOMAIN = _HALF * _HALF
_ROUNDS = 4
MAX_USERS = _DOMAIN  # one phone number per index: +2547 leaves 8 free digits


def is_e164(phone: str) -> bool:
    return bool(E164.match(phone))


def _round_function(key: bytes, rnd: int, value: int) -> int:
    digest = hashlib.blake2b(value.to_bytes(4, "big"), key=key, digest_size=8,
                             person=b"phone%d" % rnd).digest()
    return int.from_bytes(digest, "big") % _HALF


def permute(key: bytes, index: int) -> int:
    """A keyed permutation of range(10**8): distinct indices give distinct numbers."""
    if not 0 <= index < _DOMAIN:
        raise ValueError(f"phone index {index} out of range (at most {_DOMAIN} users)")
    left, right = divmod(index, _HALF)
    for rnd in range(_ROUNDS):
        left, right = right, (left + _round_function(key, rnd, right)) % _HALF
    return left * _HALF + right


def kenyan_mobile(key: bytes, index: int) -> str:
    """The user's phone: +2547 followed by 8 digits, unique per index for one key."""
    return f"{KENYA_MOBILE_PREFIX}{permute(key, index):08d}"
