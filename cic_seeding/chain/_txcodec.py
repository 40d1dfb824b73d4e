"""Signing legacy (EIP-155) transactions with coincurve directly.

Byte-identical to ``eth_account.Account.sign_transaction`` for the same fields (a test checks
it over random transactions) and several times faster, which matters when one signer signs
hundreds of thousands of transactions.
"""

from __future__ import annotations

import rlp
from coincurve import PrivateKey
from eth_utils import keccak

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def sign_legacy(key: PrivateKey, *, nonce: int, gas_price: int, gas: int, to: bytes,
                value: int, data: bytes, chain_id: int) -> tuple[bytes, bytes]:
    """``(tx_hash, raw)`` of the EIP-155 signed transaction (``to`` empty: contract creation)."""
    unsigned = rlp.encode([nonce, gas_price, gas, to, value, data, chain_id, 0, 0])
    sig = key.sign_recoverable(keccak(unsigned), hasher=None)
    r, s, rec = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64]
    if s > SECP256K1_N // 2:  # low-s form, as eth-keys produces
        s, rec = SECP256K1_N - s, rec ^ 1
    raw = rlp.encode([nonce, gas_price, gas, to, value, data, rec + chain_id * 2 + 35, r, s])
    return keccak(raw), raw
