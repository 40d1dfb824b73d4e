"""Signing legacy (EIP-155) and EIP-1559 (type 2) transactions with coincurve directly, and
reading a signed transaction back.

Byte-identical to ``eth_account.Account.sign_transaction`` for the same fields (a test checks
it over random transactions) and several times faster, which matters when one signer signs
hundreds of thousands of transactions. The transactions are encoded by :func:`rlp_list`, a
flat-list RLP encoder (the ``rlp`` package infers a sedes per item and spent ~0.4 ms per
transaction on it, more than the signature); ``rlp`` still decodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import rlp
from coincurve import PrivateKey, PublicKey
from Crypto.Hash import keccak as _keccak

Item = int | bytes | list[object]

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
TYPE_1559 = 2


def keccak(data: bytes) -> bytes:
    """keccak-256 of ``data`` (pycryptodome directly: eth_utils' wrapper costs as much again)."""
    return _keccak.new(data=data, digest_bits=256).digest()


def _rlp_item(item: Item) -> bytes:
    if isinstance(item, int):
        if item < 0:
            raise ValueError(f"RLP cannot encode a negative integer: {item}")
        item = item.to_bytes((item.bit_length() + 7) // 8, "big")
    elif isinstance(item, list):
        if item:
            raise ValueError("rlp_list encodes flat lists (an empty list inside only)")
        return b"\xc0"
    if len(item) == 1 and item[0] < 0x80:
        return bytes(item)
    return _rlp_length(len(item), 0x80) + item


def _rlp_length(n: int, offset: int) -> bytes:
    if n <= 55:
        return bytes([offset + n])
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([offset + 55 + len(size)]) + size


def rlp_list(items: list[Item]) -> bytes:
    """RLP of a list of integers, byte strings and empty lists (what a transaction is)."""
    payload = b"".join([_rlp_item(i) for i in items])
    return _rlp_length(len(payload), 0xC0) + payload


def _sign(key: PrivateKey, digest: bytes) -> tuple[int, int, int]:
    """``(recovery id, r, s)`` in low-s form, as eth-keys produces."""
    sig = key.sign_recoverable(digest, hasher=None)
    r, s, rec = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64]
    if s > SECP256K1_N // 2:
        s, rec = SECP256K1_N - s, rec ^ 1
    return rec, r, s


def sign_legacy(key: PrivateKey, *, nonce: int, gas_price: int, gas: int, to: bytes,
                value: int, data: bytes, chain_id: int) -> tuple[bytes, bytes]:
    """``(tx_hash, raw)`` of the EIP-155 signed transaction (``to`` empty: contract creation)."""
    unsigned = rlp_list([nonce, gas_price, gas, to, value, data, chain_id, 0, 0])
    rec, r, s = _sign(key, keccak(unsigned))
    raw = rlp_list([nonce, gas_price, gas, to, value, data, rec + chain_id * 2 + 35, r, s])
    return keccak(raw), raw


def sign_1559(key: PrivateKey, *, nonce: int, max_fee: int, max_priority_fee: int, gas: int,
              to: bytes, value: int, data: bytes, chain_id: int) -> tuple[bytes, bytes]:
    """``(tx_hash, raw)`` of the EIP-1559 (type 2) signed transaction, empty access list."""
    fields: list[Item] = [chain_id, nonce, max_priority_fee, max_fee, gas, to, value, data, []]
    rec, r, s = _sign(key, keccak(bytes([TYPE_1559]) + rlp_list(fields)))
    raw = bytes([TYPE_1559]) + rlp_list([*fields, rec, r, s])
    return keccak(raw), raw


@dataclass(frozen=True)
class TxFields:
    """What a signed transaction says. ``max_fee`` and ``tip`` are both the gas price for a
    legacy transaction."""

    tx_type: int  # 0 legacy, 2 EIP-1559
    chain_id: int
    nonce: int
    max_fee: int
    tip: int
    gas: int
    to: bytes
    value: int
    data: bytes
    sender: str  # 0x lower-case, recovered from the signature


def _int(b: bytes) -> int:
    return int.from_bytes(b, "big")


def decode(raw: bytes) -> TxFields:
    """The fields and the sender of a signed legacy or type-2 transaction; ValueError if it is
    neither."""
    if raw and raw[0] == TYPE_1559:
        items = rlp.decode(raw[1:])
        if not isinstance(items, list) or len(items) != 12:
            raise ValueError("not a signed EIP-1559 transaction")
        chain_id, nonce, tip, max_fee, gas, to, value, data = (items[i] for i in range(8))
        y, r, s = _int(items[9]), _int(items[10]), _int(items[11])
        digest = keccak(bytes([TYPE_1559]) + rlp.encode(items[:9]))
        fields = (TYPE_1559, _int(chain_id), _int(nonce), _int(max_fee), _int(tip))
        rec = y
    elif raw and raw[0] >= 0xC0:
        items = rlp.decode(raw)
        if not isinstance(items, list) or len(items) != 9:
            raise ValueError("not a signed legacy transaction")
        nonce, price, gas, to, value, data = (items[i] for i in range(6))
        v, r, s = _int(items[6]), _int(items[7]), _int(items[8])
        if v >= 35:
            chain = (v - 35) // 2
            rec = v - 35 - 2 * chain
            digest = keccak(rlp.encode([*items[:6], chain, 0, 0]))
        else:  # pre-EIP-155
            chain, rec = 0, v - 27
            digest = keccak(rlp.encode(items[:6]))
        fields = (0, chain, _int(nonce), _int(price), _int(price))
    else:
        raise ValueError("not a signed transaction this codec reads")
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([rec])
    public = PublicKey.from_signature_and_message(signature, digest, hasher=None)
    sender = "0x" + keccak(public.format(compressed=False)[1:])[-20:].hex()
    return TxFields(*fields, _int(gas), bytes(to), _int(value), bytes(data), sender)
