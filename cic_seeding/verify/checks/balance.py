"""The token balance check: opening balance plus the faucet payout plus what the confirmed
transfers of ``cic-seed traffic`` moved, exactly or within ``--balance-adjust``. Every amount
is an integer in the token's smallest unit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cic_seeding.units import dataset_to_token_exact
from cic_seeding.verify.base import ChainCheck, CheckContext, Verdict, VerifyUser, targets_of
from cic_seeding.verify.users import Traffic, load_traffic

DIFFERS = "the token balance differs from the expected amount"
UNSETTLED = ("the token balance differs from the expected amount while transfers of the user "
             "are not settled in the traffic ledger (rerun `cic-seed traffic`)")
MALFORMED = "its balances.csv row cannot be read"
NO_ROW = "it has no row in balances.csv"
NOT_WHOLE = "its opening balance is not a whole amount in the token's decimals"


class BalanceCheck(ChainCheck):
    id = "balance"
    description = ("token balance = opening balance + the faucet amount if the faucet paid + "
                   "the net of confirmed traffic transfers (--balance-adjust allows a bounded "
                   "deviation)")
    groups = ("chain", "funding")

    def __init__(self, ctx: CheckContext) -> None:
        super().__init__(ctx)
        self.traffic: Traffic = load_traffic(ctx.settings, ctx.data)

    def verify(self, users: Sequence[VerifyUser]) -> dict[str, Verdict]:
        """A user without a usable balances.csv row fails with what is wrong with it,
        imported or not (the import quarantined it for the same reason)."""
        bad = {u.address: self._unusable(u) for u in users
               if u.balance_problem is not None or u.opening_balance is None}
        out = super().verify([u for u in users if u.address not in bad])
        out.update(bad)
        return out

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

    def _unusable(self, user: VerifyUser) -> Verdict:
        if user.balance_problem is not None:
            return Verdict.failed(MALFORMED, user.balance_problem)
        return Verdict.failed(NO_ROW)

    def finish(self) -> list[str]:
        return list(self.traffic.problems)

    def _judge(self, user: VerifyUser, actual: int, faucet: int) -> Verdict:
        ctx = self.ctx
        assert user.opening_balance is not None  # verify() answered for the others
        opening = dataset_to_token_exact(user.opening_balance, ctx.dataset_decimals,
                                         ctx.token_decimals)
        if opening is None:
            return Verdict.failed(NOT_WHOLE, f"{user.opening_balance} ({ctx.dataset_decimals} "
                                  f"decimals) in a token of {ctx.token_decimals} decimals")
        moved = self.traffic.net[user.address]
        expected = opening + faucet + moved
        low, high = expected, expected
        if ctx.balance_adjust is not None:
            low, high = ctx.balance_adjust.bounds(expected, ctx.token_decimals)
        if low <= actual <= high:
            return Verdict.passed()
        parts = f"opening {opening} + faucet {faucet}"
        if self.traffic.confirmed[user.address]:
            parts += f" {'-' if moved < 0 else '+'} traffic {abs(moved)}"
        allowed = f", accepted {low}..{high}" if (low, high) != (expected, expected) else ""
        detail = f"expected {expected} ({parts}{allowed}), found {actual}"
        unsettled = self.traffic.unsettled[user.address]
        if unsettled:
            return Verdict.failed(UNSETTLED, f"{detail}; {unsettled} unsettled")
        return Verdict.failed(DIFFERS, detail)
