"""Plain values for transactions: an unsigned call from the signer and a receipt."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Call:
    """An unsigned transaction from the signer; ``to`` None deploys ``data`` as a contract."""

    to: str | None
    data: bytes
    value: int = 0
    gas: int = 100_000


@dataclass(frozen=True)
class Receipt:
    tx_hash: str
    ok: bool
    block_number: int
    contract_address: str | None = None
    logs: tuple[dict, ...] = ()  # type: ignore[type-arg]


def created_address(sender: str, nonce: int) -> str:
    """The address (0x lower-case) of the contract that ``sender``'s transaction with
    ``nonce`` creates: the last 20 bytes of keccak(rlp([sender, nonce]))."""
    from cic_seeding.chain._txcodec import keccak, rlp_list

    return "0x" + keccak(rlp_list([bytes.fromhex(sender[2:]), nonce]))[12:].hex()
