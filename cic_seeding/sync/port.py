"""What the syncer needs from a chain, as one small interface (tests use a fake).

:class:`cic_seeding.sync.chain.RegistryChain` implements it over JSON-RPC for a CIC registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from cic_seeding.chain.tx import Call, Receipt

__all__ = ["Call", "Receipt", "SyncChain"]


class SyncChain(Protocol):
    #: Names the chain in the cursor table (the chain spec).
    chain_key: str
    #: The signer's address (0x, lower-case).
    signer: str

    def head(self) -> int:
        """The latest block number."""
        ...

    def block_hashes(self, numbers: Sequence[int]) -> dict[int, str]:
        """Hashes of the given blocks that exist (batched)."""
        ...

    def registrations(self, first: int, last: int) -> list[tuple[int, str]]:
        """``(block, address)`` of every AddressAdded of the registry's AccountsIndex in the
        inclusive block range ``[first, last]``, in chain order."""
        ...

    def registering_txs(self, registrations: Sequence[tuple[int, str]]) -> dict[str, str]:
        """``{address: tx hash}`` of the transactions that emitted ``registrations`` (as
        :meth:`registrations` returned them; those whose log named none are left out)."""
        ...

    def registered(self, addresses: Sequence[str]) -> set[str]:
        """Those ``addresses`` the AccountsIndex has (lower-case)."""
        ...

    def faucet_paid(self, addresses: Sequence[str]) -> set[str]:
        """Those ``addresses`` that already used the faucet (lower-case)."""
        ...

    def paid(self, kind: str, addresses: Sequence[str]) -> set[str]:
        """Those ``addresses`` the chain shows paid the payment ``kind`` (fund: a token
        transfer or mint from the signer; faucet: the faucet used; gas: a native balance or a
        transaction sent), whatever transaction paid it (lower-case)."""
        ...
