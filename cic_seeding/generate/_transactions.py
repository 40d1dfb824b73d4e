"""Transfer fixtures (``transactions.csv``) between the users of one generator run.

Opening balances are a function of (seed, index) (:func:`opening_balance`), so the fixtures
need no list of users: memory grows with the number of transfers, not with the number of users.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from cic_seeding.generate.keys import opening_balance, user_address

_RANDOM_TRIES = 32  # random picks of a funded sender before falling back to a scan
MAX_GAP = 600  # seconds between two consecutive transfers, at most


@dataclass
class _Ledger:
    """Current balances of the users a run's transfers touched; the rest hold their opening."""

    seed: int
    max_balance: int
    balances: dict[int, int] = field(default_factory=dict)
    addresses: dict[int, str] = field(default_factory=dict)

    def balance(self, index: int) -> int:
        if index in self.balances:
            return self.balances[index]
        return opening_balance(self.seed, index, self.max_balance)

    def address(self, index: int) -> str:
        if index not in self.addresses:
            self.addresses[index] = user_address(self.seed, index)
        return self.addresses[index]


def any_funded(seed: int, first: int, count: int, max_balance: int) -> bool:
    """Whether some user of the run opens with a positive balance (stops at the first)."""
    return any(opening_balance(seed, i, max_balance) > 0 for i in range(first, first + count))


def transfers(seed: int, first: int, count: int, max_balance: int, n: int,
              start_offset: int = 0) -> Iterator[tuple[str, str, int, int]]:
    """``n`` transfers (sender, recipient, amount, offset seconds) between users
    ``first .. first+count-1`` that never overdraw a sender, replayed from their opening balances.

    The caller makes sure ``count >= 2`` and :func:`any_funded`; transfers keep the run's total,
    so a funded sender always exists.
    """
    rng = random.Random(hashlib.sha256(f"cic-seeding/tx/v2:{seed}:{first}".encode()).digest())
    ledger = _Ledger(seed, max_balance)
    offset = start_offset
    for _ in range(n):
        sender = _funded_sender(rng, ledger, first, count)
        held = ledger.balance(sender)
        recipient = first + rng.randrange(count - 1)
        recipient += recipient >= sender
        amount = rng.randint(1, max(1, held // 4))
        ledger.balances[sender] = held - amount
        ledger.balances[recipient] = ledger.balance(recipient) + amount
        offset += rng.randint(1, MAX_GAP)
        yield ledger.address(sender), ledger.address(recipient), amount, offset


def _funded_sender(rng: random.Random, ledger: _Ledger, first: int, count: int) -> int:
    for _ in range(_RANDOM_TRIES):
        index = first + rng.randrange(count)
        if ledger.balance(index) > 0:
            return index
    start = rng.randrange(count)  # most users are empty: walk on to the next funded one
    for step in range(count):
        index = first + (start + step) % count
        if ledger.balance(index) > 0:
            return index
    raise AssertionError("no funded user left: the caller must check any_funded() first")
