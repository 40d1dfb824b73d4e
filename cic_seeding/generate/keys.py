"""Deterministic user keys: ``derive_private_key(seed, index)``.

A generated user's private key is never written to ``src/``. Whoever needs it derives it again
from the manifest's seed and the user's index (``users.csv``)::

    from cic_seeding.generate.keys import derive_private_key
    key = derive_private_key(manifest.seed, row.index)   # 32 bytes
"""

from __future__ import annotations

import hashlib

import coincurve
from eth_utils import keccak, to_checksum_address

_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_DOMAIN = b"cic-seeding/user-key/v1"


def derive_private_key(seed: int, index: int) -> bytes:
    counter = 0
    while True:
        digest = hashlib.sha256(
            _DOMAIN + seed.to_bytes(16, "big", signed=True) + index.to_bytes(8, "big")
            + counter.to_bytes(4, "big")).digest()
        if 0 < int.from_bytes(digest, "big") < _SECP256K1_N:
            return digest
        counter += 1  # astronomically rare; keeps the key valid


def address_of(private_key: bytes) -> str:
    public = coincurve.PublicKey.from_valid_secret(private_key).format(compressed=False)[1:]
    return to_checksum_address(keccak(public)[12:])


def user_address(seed: int, index: int) -> str:
    return address_of(derive_private_key(seed, index))
