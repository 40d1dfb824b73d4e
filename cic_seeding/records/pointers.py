"""Metadata pointers: ``sha256(identifier || salt)`` as lowercase hex."""

from __future__ import annotations

import binascii
import hashlib

PERSON_SALT = b":cic.person"
CUSTOM_SALT = b":cic.custom"
PREFERENCES_SALT = b":cic.preferences"
PHONE_SALT = b":cic.phone"


def _address_bytes(address: str) -> bytes:
    # eth_utils' to_bytes(hexstr=...) without its per-call decorator checks: an optional 0x,
    # an odd length padded with a leading 0, binascii's strict hex (ValueError otherwise).
    digits = address[2:] if address[:2] in ("0x", "0X") else address
    raw = binascii.unhexlify(("0" + digits if len(digits) % 2 else digits).encode("ascii"))
    if len(raw) != 20:
        raise ValueError(f"not a 20-byte address: {address!r}")
    return raw


def person_pointer(address: str) -> str:
    return hashlib.sha256(_address_bytes(address) + PERSON_SALT).hexdigest()


def custom_pointer(address: str) -> str:
    return hashlib.sha256(_address_bytes(address) + CUSTOM_SALT).hexdigest()


def preferences_pointer(address: str) -> str:
    return hashlib.sha256(_address_bytes(address) + PREFERENCES_SALT).hexdigest()


def phone_pointer(phone: str) -> str:
    return hashlib.sha256(phone.encode("utf-8") + PHONE_SALT).hexdigest()
