"""Custodial keys at rest: AES-256-GCM under a key derived from the passphrase with scrypt.

One scrypt derivation per process (the salt is per database, in ``engine_meta``); each private
key is then sealed with a fresh 96-bit nonce and the account's address as associated data, so
a sealed key copied onto another row does not open. A sealed key is ``nonce || ciphertext ||
tag`` (12 + 32 + 16 bytes).
"""

from __future__ import annotations

import secrets

import coincurve
from Crypto.Cipher import AES
from Crypto.Hash import keccak
from Crypto.Protocol.KDF import scrypt

from cic_seeding.errors import CustodialKeyError

#: scrypt cost: 2^15 x 8 x 1 (~32 MiB, ~0.1 s), once per process.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
NONCE_BYTES, TAG_BYTES = 12, 16
#: Sealed with the derived key when a database is created; opening it checks the passphrase.
CANARY = b"cic-custodial passphrase check v1"
#: The order of secp256k1: a private key is an integer in [1, ORDER).
ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class KeyBox:
    """Seals and opens private keys with one derived key. Thread-safe (no shared state)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("a KeyBox key is 32 bytes")
        self._key = key

    def __repr__(self) -> str:
        return "KeyBox(****)"

    @classmethod
    def derive(cls, passphrase: str, salt: bytes) -> KeyBox:
        if not passphrase:
            raise CustodialKeyError("the custodial passphrase is empty",
                                    hint="set custodial_passphrase or custodial_passphrase_file")
        # the stubs say str; bytes are accepted, and keep a non-Latin-1 passphrase intact
        key = scrypt(passphrase.encode(), salt, 32, N=SCRYPT_N, r=SCRYPT_R,  # type: ignore[arg-type]
                     p=SCRYPT_P)
        return cls(key if isinstance(key, bytes) else key[0])

    def seal(self, secret: bytes, associated: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        cipher = AES.new(self._key, AES.MODE_GCM, nonce=nonce, mac_len=TAG_BYTES)
        cipher.update(associated)
        body, tag = cipher.encrypt_and_digest(secret)
        return nonce + body + tag

    def open(self, sealed: bytes, associated: bytes) -> bytes:
        """The secret; CustodialKeyError if the passphrase or the associated data differ."""
        sealed = bytes(sealed)
        if len(sealed) < NONCE_BYTES + TAG_BYTES:
            raise CustodialKeyError("a sealed key is too short to be one")
        nonce, body, tag = (sealed[:NONCE_BYTES], sealed[NONCE_BYTES:-TAG_BYTES],
                            sealed[-TAG_BYTES:])
        cipher = AES.new(self._key, AES.MODE_GCM, nonce=nonce, mac_len=TAG_BYTES)
        cipher.update(associated)
        try:
            return bytes(cipher.decrypt_and_verify(body, tag))
        except ValueError:
            raise CustodialKeyError(
                "a sealed key does not open: the passphrase differs from the one it was sealed "
                "with, or the row was altered") from None


def new_key() -> tuple[bytes, str]:
    """A fresh private key and its address (0x lower-case).

    The range check and the public key straight from coincurve, keccak straight from
    pycryptodome: building a ``PrivateKey`` and a checksummed address cost three times as
    much, and an engine makes one key per account."""
    while True:
        key = secrets.token_bytes(32)
        if not 0 < int.from_bytes(key, "big") < ORDER:  # astronomically rare
            continue
        public = coincurve.PublicKey.from_valid_secret(key).format(compressed=False)[1:]
        return key, "0x" + keccak.new(data=public, digest_bits=256).digest()[12:].hex()
