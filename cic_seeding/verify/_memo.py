"""A VerifyChain wrapper that asks the real chain at most once per address and question in a
batch, so two checks reading the same value (balance and faucet both read nextTime) cost one
call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cic_seeding.verify.port import VerifyChain


class BatchMemo:
    """Implements VerifyChain over ``chain``; :meth:`reset` between batches bounds memory."""

    def __init__(self, chain: VerifyChain) -> None:
        self._chain = chain
        self._memo: dict[str, dict[str, Any]] = {}
        self.token_address = chain.token_address
        self.token_symbol = chain.token_symbol
        self.token_decimals = chain.token_decimals

    def reset(self) -> None:
        self._memo.clear()

    def _ask(self, question: str, addresses: Sequence[str]) -> dict[str, Any]:
        memo = self._memo.setdefault(question, {})
        missing = [a for a in dict.fromkeys(addresses) if a not in memo]
        if missing:
            memo.update(getattr(self._chain, question)(missing))
        return {a: memo[a] for a in addresses if a in memo}

    def have(self, addresses: Sequence[str]) -> dict[str, bool]:
        return self._ask("have", addresses)

    def token_balances(self, addresses: Sequence[str]) -> dict[str, int]:
        return self._ask("token_balances", addresses)

    def native_balances(self, addresses: Sequence[str]) -> dict[str, int]:
        return self._ask("native_balances", addresses)

    def faucet_next_time(self, addresses: Sequence[str]) -> dict[str, int]:
        return self._ask("faucet_next_time", addresses)

    def faucet_amount(self) -> int:
        return self._chain.faucet_amount()
