"""What the outbox needs from a node, as one small interface, and its JSON-RPC implementation.

Every method that asks about many transactions or senders asks in one JSON-RPC batch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from cic_seeding.chain.client import ChainClient
from cic_seeding.chain.nonce import is_nonce_error
from cic_seeding.chain.tx import Receipt
from cic_seeding.outbox._blocks import BlockStatus

#: A node's refusal because the fee is too low (checked after "nonce used", which some nodes
#: word as "replacement transaction underpriced").
_FEE_TOO_LOW = re.compile(r"underpriced|fee too low|gas price too low|less than block base|"
                          r"FeeCapTooLow|GasPriceLessThanBasefee|max fee per gas less|"
                          r"fee cap less than", re.IGNORECASE)

#: A node's refusal because a lower nonce of the sender is not in its pool yet: a node that
#: cannot queue (the Hardhat node when it automines) or one that took a batch's transactions out
#: of order. The transaction is fine; it must be sent again after the lower ones.
_NONCE_AHEAD = re.compile(r"nonce too high|can't be queued|cannot be queued|future nonce|"
                          r"nonce gap", re.IGNORECASE)

NONCE, FEE, AHEAD, OTHER = "nonce", "fee", "ahead", "other"

#: Transactions per block asked of a node that mines when asked. anvil's cost of a block grows
#: with the whole state, not with the transactions in it (an empty block: ~70 ms at 10,000
#: users, ~600 ms at 100,000), so few full blocks are quickest -- but its per-hash receipts
#: cost time with the block's size (a block of 1,000 answered them in ~0.2 s, one of 2,500
#: in ~0.9 s): blocks of 250 were quickest with per-hash receipts ...
BLOCK = 250
#: ... and of 5,000 with receipts from the blocks' traces (:class:`BlockStatus`), which cost
#: ~12 us a transaction whatever the block's size (at 100,000 users, blocks of 2,500 cost the
#: per-transaction path's sync ~70 s of empty-block time).
TRACED_BLOCK = 5000


def refusal(message: str) -> str:
    """The class of a node's refusal of a raw transaction: NONCE (its nonce is used), FEE (too
    cheap for the node), AHEAD (a lower nonce is missing: send it again after those) or OTHER
    (insufficient funds, bad signature ...)."""
    if _NONCE_AHEAD.search(message):
        return AHEAD
    if is_nonce_error(message):
        return NONCE
    if _FEE_TOO_LOW.search(message):
        return FEE
    return OTHER


@dataclass(frozen=True)
class Fees:
    """What to sign with now: ``gas_price`` (legacy); on a chain with a base fee, the base
    fee and the suggested priority fee too."""

    gas_price: int
    base_fee: int | None = None
    tip: int = 0


@dataclass(frozen=True)
class Seen:
    """What the node says about one transaction hash (``eth_getTransactionByHash``)."""

    known: bool  # in its pool or mined
    mined: bool = False  # it names a block (the receipt follows)
    fee_cap: int = 0  # maxFeePerGas, or gasPrice of a legacy transaction


class Node(Protocol):
    """A node the outbox sends through and watches. Tests use a small fake."""

    #: True when the node mines only when asked (a devnet with automine off).
    explicit_mining: bool

    @property
    def block_size(self) -> int:
        """Transactions of a send the outbox puts in one block of a node that mines when
        asked (it asks for a block after every this many)."""
        ...

    @property
    def chain_id(self) -> int: ...

    @property
    def chain_key(self) -> str:
        """Names the chain in the outbox (chain id and genesis)."""
        ...

    def lock(self, sender: str) -> AbstractContextManager[None]:
        """Hold the sender's nonce lock (shared with every other sender on this machine)."""
        ...

    def nonces(self, senders: Sequence[str]) -> dict[str, tuple[int, int]]:
        """``sender -> (latest, pending)`` transaction counts, one batch."""
        ...

    def seen(self, hashes: Sequence[str]) -> dict[str, Seen]:
        """What the node says about each hash, one batch."""
        ...

    def receipts(self, hashes: Sequence[str]) -> dict[str, Receipt]:
        """Receipts of the mined ones among ``hashes``, one batch (their status and block
        at least)."""
        ...

    def broadcast(self, raws: Sequence[str], *, mine: bool = True) -> list[str | None]:
        """Send raw transactions in one batch (in order); None where the node took it or
        already had it, else its error. A node that mines only when asked is asked after
        (unless ``mine`` is False: more follow for the same block)."""
        ...

    def mine(self) -> None: ...

    def gas_price(self) -> int:
        """The (legacy) gas price to sign new transactions with."""
        ...

    def fees(self) -> Fees: ...

    def head(self) -> int: ...


def _int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


class ClientNode:
    """:class:`Node` over the shared :class:`ChainClient`. On a node that mines when asked,
    receipts come from the traces of the blocks mined (:class:`BlockStatus`: anvil's
    per-hash receipts cost time with the block's size), per hash where those lack one."""

    def __init__(self, client: ChainClient) -> None:
        self.client = client
        self.explicit_mining = client.explicit_mining
        self.blocks = BlockStatus(client.rpc) if client.explicit_mining else None

    @property
    def block_size(self) -> int:
        """:data:`TRACED_BLOCK` while receipts come from block traces, else :data:`BLOCK`."""
        return TRACED_BLOCK if self.blocks is not None and self.blocks.usable else BLOCK

    @property
    def chain_id(self) -> int:
        return self.client.chain_id

    @property
    def chain_key(self) -> str:
        return self.client.chain_key

    def lock(self, sender: str) -> AbstractContextManager[None]:
        return self.client.allocator_for(sender).hold()

    def nonces(self, senders: Sequence[str]) -> dict[str, tuple[int, int]]:
        return self.client.nonces(senders)

    def seen(self, hashes: Sequence[str]) -> dict[str, Seen]:
        answers = self.client.rpc.batch([("eth_getTransactionByHash", [h]) for h in hashes])
        out = {}
        for h, tx in zip(hashes, answers, strict=True):
            if isinstance(tx, Exception):
                raise tx
            if not isinstance(tx, dict):
                out[h] = Seen(False)
                continue
            cap = tx.get("maxFeePerGas") or tx.get("gasPrice") or 0
            out[h] = Seen(True, bool(tx.get("blockNumber")), _int(cap))
        return out

    def receipts(self, hashes: Sequence[str]) -> dict[str, Receipt]:
        found = self.blocks.lookup(hashes) if self.blocks is not None else {}
        rest = [h for h in hashes if h not in found]
        if rest:
            found.update(self.client.receipts(rest))
        return found

    def broadcast(self, raws: Sequence[str], *, mine: bool = True) -> list[str | None]:
        if self.blocks is not None:
            self.blocks.begin(self.client.head)
        return self.client.broadcast(raws, mine=mine)

    def mine(self) -> None:
        self.client.mine()

    def gas_price(self) -> int:
        return self.client.gas_price()

    def fees(self) -> Fees:
        base, tip = self.client.fee_market()
        return Fees(self.client.gas_price(), base, tip)

    def head(self) -> int:
        return self.client.head()
