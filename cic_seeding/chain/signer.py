"""Signing keys: from a v3 keyfile and its password, or a raw devnet key.

The private key and the password live only in this object; ``repr`` shows the address.
Transactions are legacy (EIP-155) ones, which every EVM chain CIC runs on accepts, unless a
fee cap is given: then EIP-1559 (type 2), as a fee bump on a chain with a base fee signs.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from coincurve import PrivateKey

from cic_seeding.chain._txcodec import TxFields, decode, sign_1559, sign_legacy
from cic_seeding.chain.keyfile import decrypt_v3
from cic_seeding.chain.tx import Call
from cic_seeding.errors import ConfigError, SignerError
from cic_seeding.generate.keys import address_of

__all__ = ["SignedTx", "Signer", "TxFields", "read_password", "read_signed"]

log = logging.getLogger(__name__)


def warn_if_open(path: str | Path, what: str) -> None:
    """One warning line if others than its owner may read ``path`` (a key or a password)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return  # the read that follows says what is wrong
    if mode & 0o077:
        log.warning("%s %s can be read by others than its owner (mode %04o): chmod 600 it",
                    what, path, mode)


@dataclass(frozen=True)
class SignedTx:
    tx_hash: str  # 0x-hex
    raw: str  # 0x-hex


class Signer:
    """One signing key. Use :meth:`from_keyfile` or :meth:`from_key`."""

    def __init__(self, private_key: bytes) -> None:
        self._key = private_key
        self._ck = PrivateKey(private_key)
        self.address: str = address_of(private_key)

    def __repr__(self) -> str:
        return f"Signer({self.address})"

    @classmethod
    def from_key(cls, key: str | bytes) -> Signer:
        raw = key if isinstance(key, bytes) else bytes.fromhex(key.removeprefix("0x"))
        if len(raw) != 32:
            raise SignerError("a private key is 32 bytes (64 hex characters)")
        return cls(raw)

    @classmethod
    def from_keyfile(cls, path: str | Path, password: str) -> Signer:
        """Decrypt ``path``; SignerError naming the file if it is unreadable or the password
        is wrong."""
        path = Path(path)
        warn_if_open(path, "keyfile")
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SignerError(f"cannot read keyfile {path}: {exc.strerror}",
                              hint="check -y / CIC_KEYFILE") from None
        except ValueError:
            raise SignerError(f"keyfile {path} is not JSON (expected a v3 keyfile)") from None
        try:
            key = decrypt_v3(doc, password)
        except ValueError as exc:
            if "mac" in str(exc).lower():
                raise SignerError(f"wrong password for keyfile {path}",
                                  hint="check CIC_KEYFILE_PASSWORD or CIC_KEYFILE_PASSWORD_FILE"
                                  ) from None
            raise SignerError(f"keyfile {path} is not a valid v3 keyfile: {exc}") from None
        except (KeyError, TypeError) as exc:
            raise SignerError(f"keyfile {path} is not a valid v3 keyfile (missing {exc})"
                              ) from None
        return cls(key)

    def sign(self, call: Call, *, nonce: int, gas_price: int, chain_id: int,
             tip: int | None = None) -> SignedTx:
        """Legacy with ``gas_price``; with ``tip``, type 2 with fee cap ``gas_price`` and
        priority fee ``tip``."""
        to = bytes.fromhex(call.to.removeprefix("0x")) if call.to else b""
        if tip is None:
            tx_hash, raw = sign_legacy(self._ck, nonce=nonce, gas_price=gas_price, gas=call.gas,
                                       to=to, value=call.value, data=call.data,
                                       chain_id=chain_id)
        else:
            tx_hash, raw = sign_1559(self._ck, nonce=nonce, max_fee=gas_price,
                                     max_priority_fee=tip, gas=call.gas, to=to,
                                     value=call.value, data=call.data, chain_id=chain_id)
        return SignedTx("0x" + tx_hash.hex(), "0x" + raw.hex())


def read_signed(raw: str) -> TxFields:
    """What a signed transaction (0x-hex) says: type, chain id, nonce, fees, call, sender;
    ValueError if it is not a legacy or type-2 transaction."""
    return decode(bytes.fromhex(raw.removeprefix("0x")))


def read_password(password: str | None, password_file: str | None, what: str) -> str:
    """The password given directly or in a file (first line); ConfigError if neither."""
    if password is not None:
        return password
    if password_file:
        warn_if_open(password_file, f"the {what} password file")
        try:
            return Path(password_file).read_text(encoding="utf-8").splitlines()[0] \
                if os.path.getsize(password_file) else ""
        except OSError as exc:
            raise ConfigError(f"cannot read the {what} password file {password_file}: "
                              f"{exc.strerror}") from None
    raise ConfigError(f"no password for the {what}",
                      hint="set CIC_KEYFILE_PASSWORD or CIC_KEYFILE_PASSWORD_FILE")
