"""Web3 Secret Storage (v3) keyfiles with scrypt done by OpenSSL (``hashlib.scrypt``).

The format is eth-keyfile's (and geth's): files written here decrypt with
``eth_keyfile.decode_keyfile_json`` and the reverse. The point is speed: eth-keyfile runs
scrypt through pycryptodome's Python-level PBKDF2, about 1 ms of overhead per file, which at
100,000 light keyfiles is minutes. Keyfiles with another KDF (pbkdf2) are handed to eth-keyfile.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import uuid
from dataclasses import dataclass
from typing import Any

from Crypto.Cipher import AES
from eth_utils import keccak

#: scrypt parameters r and p (as geth and eth-keyfile use them); N is the cost knob.
R, P, DKLEN = 8, 1, 32


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=dklen,
                          maxmem=256 * r * (n + p + 2) + 2**20)


@dataclass(frozen=True)
class KdfKey:
    """A password stretched by scrypt (cost ``n``) with one salt: what encrypting costs."""

    n: int
    salt: bytes
    derived: bytes


def kdf_key(password: str, n: int) -> KdfKey:
    """``password`` stretched with a fresh random salt."""
    salt = os.urandom(32)
    return KdfKey(n, salt, _scrypt(password.encode(), salt, n, R, P, DKLEN))


def encrypt_v3(private_key: bytes, password: str, *, n: int, address: str | None = None,
               key: KdfKey | None = None) -> dict[str, Any]:
    """A v3 keyfile document for ``private_key`` (scrypt with cost ``n``).

    ``key`` (:func:`kdf_key` of the same password and ``n``) reuses one stretched password and
    its salt for many files, each with its own random IV and decrypting on its own. Files that
    share a password lose nothing by it: whoever finds the password of one opens them all
    anyway, and a fresh salt per key still defeats tables computed in advance."""
    if key is None:
        key = kdf_key(password, n)
    elif key.n != n:
        raise ValueError(f"the stretched key has scrypt n={key.n}, not {n}")
    salt, derived, iv = key.salt, key.derived, os.urandom(16)
    ciphertext = AES.new(derived[:16], AES.MODE_CTR, initial_value=iv, nonce=b"").encrypt(
        private_key)
    doc: dict[str, Any] = {
        "crypto": {
            "cipher": "aes-128-ctr",
            "cipherparams": {"iv": iv.hex()},
            "ciphertext": ciphertext.hex(),
            "kdf": "scrypt",
            "kdfparams": {"dklen": DKLEN, "n": n, "p": P, "r": R, "salt": salt.hex()},
            "mac": keccak(derived[16:32] + ciphertext).hex(),
        },
        "id": str(uuid.UUID(bytes=os.urandom(16), version=4)),
        "version": 3,
    }
    if address is not None:
        doc["address"] = address.lower().removeprefix("0x")
    return doc


def decrypt_v3(doc: dict[str, Any], password: str, *,
               stretched: dict[tuple[Any, ...], bytes] | None = None) -> bytes:
    """The private key in ``doc``; ValueError("MAC mismatch") for a wrong password.

    ``stretched`` keeps the password's scrypt keys by salt and parameters across calls: files
    that share a salt (:func:`encrypt_v3` with ``key``) cost one scrypt between them."""
    crypto = doc.get("crypto") or doc.get("Crypto") or {}
    if crypto.get("kdf") != "scrypt" or crypto.get("cipher") != "aes-128-ctr":
        import eth_keyfile  # (its import costs ~0.3 s: only for the keyfiles it alone reads)

        return bytes(eth_keyfile.decode_keyfile_json(doc, password.encode()))
    params = crypto["kdfparams"]
    which = (password, bytes.fromhex(params["salt"]), int(params["n"]), int(params["r"]),
             int(params["p"]), int(params["dklen"]))
    derived = stretched.get(which) if stretched is not None else None
    if derived is None:
        derived = _scrypt(which[0].encode(), *which[1:])
        if stretched is not None:
            stretched[which] = derived
    ciphertext = bytes.fromhex(crypto["ciphertext"])
    if not hmac.compare_digest(keccak(derived[16:32] + ciphertext).hex(),
                               str(crypto["mac"]).lower().removeprefix("0x")):
        raise ValueError("MAC mismatch")
    iv = bytes.fromhex(crypto["cipherparams"]["iv"])
    return bytes(AES.new(derived[:16], AES.MODE_CTR, initial_value=iv, nonce=b"").decrypt(
        ciphertext))
