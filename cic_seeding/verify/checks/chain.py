"""Checks of a user's presence and funding on the target chain: registration, gas, faucet."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cic_seeding.verify.base import SOVEREIGN, ChainCheck, Verdict, VerifyUser, targets_of


class AccountsIndexCheck(ChainCheck):
    id = "accounts_index"
    description = "the registry's AccountsIndex has the user (have(address) is true)"
    groups = ("chain", "registration")

    def check(self, users: Sequence[VerifyUser]) -> Mapping[str, Verdict]:
        have = self.chain.have(targets_of(users))
        out = {}
        for u in users:
            assert u.target is not None  # the base class filtered the others
            ok = bool(self.answer(have, u.target, "AccountsIndex.have"))
            out[u.address] = Verdict.passed() if ok else Verdict.failed(
                "the AccountsIndex does not have the user",
                "" if u.target == u.address else f"its target {u.target}")
        return out


class GasCheck(ChainCheck):
    id = "gas"
    description = "the user has a native (gas) balance above zero"
    groups = ("chain", "funding")

    def check(self, users: Sequence[VerifyUser]) -> Mapping[str, Verdict]:
        imports = self.ctx.imports
        if self.ctx.settings.gas_gift == 0 and imports is not None and \
                imports.custody == SOVEREIGN:
            none = Verdict.not_applicable("sovereign users when no gas is gifted (gas_gift 0)")
            return {u.address: none for u in users}
        wei = self.chain.native_balances(targets_of(users))
        out = {}
        for u in users:
            assert u.target is not None
            ok = self.answer(wei, u.target, "native balance") > 0
            out[u.address] = Verdict.passed() if ok else Verdict.failed(
                "the user has no gas: its native balance is 0 wei")
        return out


class FaucetCheck(ChainCheck):
    id = "faucet"
    description = "the faucet paid the user (nextTime(address) is non-zero)"
    groups = ("chain", "funding")

    def check(self, users: Sequence[VerifyUser]) -> Mapping[str, Verdict]:
        if self.ctx.faucet_amount == 0:
            none = Verdict.not_applicable("users of a faucet that pays nothing (tokenAmount 0)")
            return {u.address: none for u in users}
        next_time = self.chain.faucet_next_time(targets_of(users))
        out = {}
        for u in users:
            assert u.target is not None
            ok = self.answer(next_time, u.target, "faucet nextTime") != 0
            out[u.address] = Verdict.passed() if ok else Verdict.failed(
                "the faucet never paid the user (nextTime is 0)")
        return out
