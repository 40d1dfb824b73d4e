"""Metadata pointers: ``sha256(identifier || salt)`` as lowercase hex."""

from __future__ import annotations

import hashlib

from eth_utils import to_bytes

PERSON_SALT = b":cic.person"
CUSTOM_SALT = b":cic.custom"
PREFERENCES_SALT = b":cic.preferences"
PHONE_SALT = b":cic.phone"


def _address_bytes(address: str) -> bytes:
    raw = to_bytes(hexstr=address)
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
