"""What the verifier needs from a chain, as one small interface (tests use a fake).

``cic_seeding.chain.connect.verify_chain(settings)`` implements it over JSON-RPC for a CIC
registry. Every method takes a batch of addresses and answers for all of them at once; keys of
the returned dicts are the 0x lower-case addresses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = ["VerifyChain"]


class VerifyChain(Protocol):
    #: The token being verified (0x, checksummed), its symbol and decimals, read on chain.
    token_address: str
    token_symbol: str
    token_decimals: int

    def have(self, addresses: Sequence[str]) -> dict[str, bool]:
        """``AccountsIndex.have(address)`` for each address."""
        ...

    def token_balances(self, addresses: Sequence[str]) -> dict[str, int]:
        """Token balance of each address in the token's smallest unit."""
        ...

    def native_balances(self, addresses: Sequence[str]) -> dict[str, int]:
        """Native (gas) balance of each address in wei."""
        ...

    def faucet_next_time(self, addresses: Sequence[str]) -> dict[str, int]:
        """``ERC20Faucet.nextTime(address)``; 0 means the address never used the faucet."""
        ...

    def faucet_amount(self) -> int:
        """``ERC20Faucet.tokenAmount()``: what one faucet payout is, in the smallest unit."""
        ...
