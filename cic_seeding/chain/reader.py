"""Batched reads of a CIC network for the verifier (implements ``verify.port.VerifyChain``).

Each question about N addresses is one JSON-RPC array of N ``eth_call``s (chunked), never one
round trip per address.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from cic_seeding.chain.abi import Function
from cic_seeding.chain.registry import ACCOUNTS_INDEX, FAUCET, TOKEN, CicNetwork


class NetworkReader:
    def __init__(self, network: CicNetwork, token_symbol: str | None = None) -> None:
        self.network = network
        self.client = network.client
        token = network.token(token_symbol)
        self.token_address = token.address
        self.token_symbol = token.symbol
        self.token_decimals = token.decimals

    @cached_property
    def _index(self) -> str:
        return self.network.accounts_index

    @cached_property
    def _faucet(self) -> str:
        return self.network.faucet

    def _ask(self, to: str, fn: Function, addresses: Sequence[str]) -> dict[str, Any]:
        answers = self.client.call_many([(to, fn, (a,)) for a in addresses])
        out = {}
        for a, v in zip(addresses, answers, strict=True):
            if isinstance(v, Exception):
                raise v
            out[a.lower()] = v
        return out

    def have(self, addresses: Sequence[str]) -> dict[str, bool]:
        return {a: bool(v) for a, v in self._ask(self._index, ACCOUNTS_INDEX.fn("have"),
                                                 addresses).items()}

    def token_balances(self, addresses: Sequence[str]) -> dict[str, int]:
        return self._ask(self.token_address, TOKEN.fn("balanceOf"), addresses)

    def native_balances(self, addresses: Sequence[str]) -> dict[str, int]:
        values = self.client.native_balances(addresses)
        return {a.lower(): v for a, v in zip(addresses, values, strict=True)}

    def faucet_next_time(self, addresses: Sequence[str]) -> dict[str, int]:
        return self._ask(self._faucet, FAUCET.fn("nextTime"), addresses)

    def faucet_amount(self) -> int:
        faucet_token, amount = self.client.call_many([
            (self._faucet, FAUCET.fn("token"), ()), (self._faucet, FAUCET.fn("tokenAmount"), ())])
        if isinstance(amount, Exception):
            raise amount
        if isinstance(faucet_token, str) and faucet_token.lower() != self.token_address.lower():
            return 0  # the faucet pays another token: nothing of this one
        return int(amount)
