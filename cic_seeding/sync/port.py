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

    def registered(self, addresses: Sequence[str]) -> set[str]:
        """Those ``addresses`` the AccountsIndex has (lower-case)."""
        ...

    def faucet_paid(self, addresses: Sequence[str]) -> set[str]:
        """Those ``addresses`` that already used the faucet (lower-case)."""
        ...

    def pending_nonce(self) -> int:
        """The signer's pending transaction count."""
        ...

    def sign(self, call: Call, nonce: int) -> tuple[str, str]:
        """``(tx_hash, raw_tx hex)`` of ``call`` signed with ``nonce``."""
        ...

    def broadcast(self, raws: Sequence[str]) -> list[str | None]:
        """Send signed transactions in one batch; per transaction None (accepted, or the node
        already had it) or the node's error."""
        ...

    def receipts(self, tx_hashes: Sequence[str]) -> dict[str, Receipt]:
        """Receipts of the mined ones among ``tx_hashes`` (batched)."""
        ...

    def known(self, tx_hashes: Sequence[str]) -> set[str]:
        """Those ``tx_hashes`` the node knows (pending or mined)."""
        ...
