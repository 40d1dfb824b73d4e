"""EIP-55 checksums with keccak straight from pycryptodome: eth_utils' ``to_checksum_address``
and ``is_checksum_address`` cost about five times as much, which over 100,000 users is seconds
(checked against eth_utils in tests/unit/test_address.py)."""

from __future__ import annotations

from Crypto.Hash import keccak


def checksummed(address: str) -> str:
    """``address`` (0x and 40 hex digits, any case) in its EIP-55 form."""
    hex_part = address[2:].lower()
    digest = keccak.new(data=hex_part.encode(), digest_bits=256).digest().hex()
    return "0x" + "".join(c.upper() if d >= "8" else c for c, d in zip(hex_part, digest,
                                                                          strict=False))


def case_ok(address: str) -> bool:
    """False only when ``address``'s mixed case breaks its EIP-55 checksum (a mistyped
    character); all lower or all upper case carries no checksum. ``address`` is 0x and 40 hex
    digits."""
    hex_part = address[2:]
    if hex_part == hex_part.lower() or hex_part == hex_part.upper():
        return True
    return checksummed(address)[2:] == hex_part
