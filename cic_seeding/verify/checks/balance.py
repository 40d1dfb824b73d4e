"""The token balance check: opening balance plus the faucet payout, exactly or within
``--balance-adjust``. Every amount is an integer in the token's smallest unit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cic_seeding.units import dataset_to_token_exact
from cic_seeding.verify.base import ChainCheck, Verdict, VerifyUser, targets_of


class BalanceCheck(ChainCheck):
    id = "balance"
    description = ("token balance = opening balance + the faucet amount if the faucet paid "
                   "(--balance-adjust allows a bounded deviation)")
    groups = ("chain", "funding")

    def check(self, users: Sequence[VerifyUser]) -> Mapping[str, Verdict]:
        targets = targets_of(users)
        balances = self.chain.token_balances(targets)
        next_time = self.chain.faucet_next_time(targets) if self.ctx.faucet_amount else {}
        out = {}
        for u in users:
            assert u.target is not None
            faucet = 0
            if self.ctx.faucet_amount and self.answer(next_time, u.target, "faucet nextTime"):
                faucet = self.ctx.faucet_amount
            actual = self.answer(balances, u.target, "token balance")
            out[u.address] = self._judge(u, actual, faucet)
        return out

    def _judge(self, user: VerifyUser, actual: int, faucet: int) -> Verdict:
        ctx = self.ctx
        if user.opening_balance is None:
            return Verdict.failed("no opening balance in balances.csv")
        opening = dataset_to_token_exact(user.opening_balance, ctx.dataset_decimals,
                                         ctx.token_decimals)
        if opening is None:
            return Verdict.failed(
                f"opening balance {user.opening_balance} ({ctx.dataset_decimals} decimals) is "
                f"not a whole amount in the token's {ctx.token_decimals} decimals")
        expected = opening + faucet
        low, high = expected, expected
        if ctx.balance_adjust is not None:
            low, high = ctx.balance_adjust.bounds(expected, ctx.token_decimals)
        if low <= actual <= high:
            return Verdict.passed()
        allowed = f" (accepted {low}..{high})" if (low, high) != (expected, expected) else ""
        return Verdict.failed(f"token balance {actual} != expected {expected}{allowed} = opening "
                              f"{opening} + faucet {faucet}, smallest unit "
                              f"({ctx.token_decimals} decimals)")
