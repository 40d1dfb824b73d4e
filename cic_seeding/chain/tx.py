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
