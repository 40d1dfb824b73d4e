"""What a user gets from (seed, index) alone: private key, address, phone number, opening balance,
preferred language.

A generated user's private key is never written to ``src/``. Whoever needs it derives it again
from the manifest's seed and the user's index (``users.csv``)::

    from cic_seeding.generate.keys import derive_private_key
    key = derive_private_key(manifest.seed, row.index)   # 32 bytes

Each value uses its own sha256 domain tag, so none of them can be computed from another.
"""

from __future__ import annotations

import hashlib

import coincurve
from eth_utils import keccak, to_checksum_address

from cic_seeding.records.phone import kenyan_mobile

_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_DOMAIN = b"cic-seeding/user-key/v1"
_PHONE_DOMAIN = b"cic-seeding/phone/v1"
_BALANCE_DOMAIN = b"cic-seeding/balance/v1"
SEED_BITS = 127  # seeds are signed integers of at most 128 bits


def check_seed(seed: int) -> bool:
    """Whether ``seed`` is usable (it must fit the 16 bytes the derivations hash)."""
    return -(1 << SEED_BITS) <= seed < 1 << SEED_BITS


def derive_private_key(seed: int, index: int) -> bytes:
    """User ``index``'s secp256k1 private key (32 bytes); distinct indices give distinct keys."""
    counter = 0
    while True:
        digest = hashlib.sha256(
            _DOMAIN + seed.to_bytes(16, "big", signed=True) + index.to_bytes(8, "big")
            + counter.to_bytes(4, "big")).digest()
        if 0 < int.from_bytes(digest, "big") < _SECP256K1_N:
            return digest
        counter += 1  # astronomically rare; keeps the key valid


def raw_address(private_key: bytes) -> bytes:
    """The 20 address bytes of a private key."""
    public = coincurve.PublicKey.from_valid_secret(private_key).format(compressed=False)[1:]
    return keccak(public)[12:]


def address_of(private_key: bytes) -> str:
    """The checksummed 0x address of a private key."""
    return to_checksum_address(raw_address(private_key))


def user_address(seed: int, index: int) -> str:
    return address_of(derive_private_key(seed, index))


def phone_key(seed: int) -> bytes:
    """The key of the phone permutation of a data directory (one per seed)."""
    return hashlib.sha256(_PHONE_DOMAIN + str(seed).encode()).digest()


def user_phone(seed: int, index: int, key: bytes | None = None) -> str:
    """User ``index``'s E.164 phone; unique per index for one seed (a keyed permutation)."""
    return kenyan_mobile(phone_key(seed) if key is None else key, index)


def opening_balance(seed: int, index: int, max_balance: int) -> int:
    """User ``index``'s opening balance: uniform in ``[0, max_balance]`` (smallest unit)."""
    if max_balance <= 0:
        return 0
    digest = hashlib.sha512(_BALANCE_DOMAIN + seed.to_bytes(16, "big", signed=True)
                            + index.to_bytes(8, "big")).digest()
    return int.from_bytes(digest, "big") % (max_balance + 1)  # bias < 2**-380 for any max we allow


#: The languages a user may prefer (the USSD menus speak both), in menu order.
LANGUAGES = ("en", "sw")


def preferred_language(seed: int, index: int) -> str:
    """User ``index``'s preferred language, ``en`` or ``sw`` -- the one place it is decided.

    The person schema has no language field, so it is derived, not stored: USSD registration
    answers the language menu with it, the metadata preferences document carries it, and the
    verifier expects it in both. (The domain tag is the one USSD registration always used, so
    users registered before this function moved here keep their language.)
    """
    digest = hashlib.sha256(f"cic-ussd-language:{seed}:{index}".encode()).digest()
    return LANGUAGES[digest[0] % len(LANGUAGES)]
