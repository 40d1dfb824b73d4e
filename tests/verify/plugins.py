"""Third-party-style checks the tests install as entry points (see test_runner.plugins)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cic_seeding.verify import Check, Verdict, VerifyUser


class CustodialCheck(Check):
    id = "custodial_account"
    description = "the custodial engine knows the user"
    groups = ("custodial",)
    backends = ("custodial",)
    needs_target = True

    def check(self, users: Sequence[VerifyUser]) -> Mapping[str, Verdict]:
        return {u.address: Verdict.failed("boom") for u in users}


class EveryOtherCheck(Check):
    id = "every_other"
    description = "a third-party check failing odd indices and skipping multiples of 4"
    groups = ("third-party",)

    def check(self, users: Sequence[VerifyUser]) -> Mapping[str, Verdict]:
        return {u.address: Verdict.skipped("n/a") if u.index % 4 == 0 else
                Verdict.failed("odd") if u.index % 2 else Verdict.passed() for u in users}


class Forgetful(EveryOtherCheck):
    id = "forgetful"

    def check(self, users: Sequence[VerifyUser]) -> Mapping[str, Verdict]:
        return {}
