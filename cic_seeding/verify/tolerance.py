"""``--balance-adjust``: a bounded deviation the balance check accepts.

``N`` (or ``±N``) accepts up to N whole token units either way, ``+N`` only above the expected
balance, ``-N`` only below; ``P%``, ``+P%``, ``-P%`` the same as a percentage of the expected
balance. N and P may have decimals (``0.5``, ``2.5%``). Bounds are exact integers in the token's
smallest unit, so nothing is compared in floating point.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from cic_seeding.errors import UsageError

_SYNTAX = re.compile(r"^\s*(?P<sign>[+\-±]?)\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<pct>%?)\s*$")


@dataclass(frozen=True)
class Tolerance:
    """How far a balance may be below (``down``) or above (``up``) the expected one.

    ``amount`` is whole token units, or a percentage when ``percent``.
    """

    amount: Fraction
    percent: bool
    up: bool = True
    down: bool = True
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> Tolerance:
        """Parse ``[±|+|-]N[%]``; UsageError explaining the syntax otherwise."""
        m = _SYNTAX.match(text)
        try:
            amount = Fraction(Decimal(m["num"])) if m else None
        except InvalidOperation:
            amount = None
        if m is None or amount is None:
            raise UsageError(f"--balance-adjust {text!r} is not a deviation",
                             hint="give N or ±N (token units, +N above / -N below only) or "
                             "P%, e.g. --balance-adjust=5 or --balance-adjust=-2.5%")
        sign = m["sign"]
        return cls(amount, bool(m["pct"]), up=sign != "-", down=sign != "+", text=text.strip())

    def bounds(self, expected: int, decimals: int) -> tuple[int, int]:
        """The accepted ``(lowest, highest)`` balance, in the smallest unit, around ``expected``.

        The allowance is rounded down to a whole smallest unit, so it never grows.
        """
        if self.percent:
            allowance = int(Fraction(expected) * self.amount / 100)
        else:
            allowance = int(self.amount * 10**decimals)
        return (expected - allowance if self.down else expected,
                expected + allowance if self.up else expected)

    def describe(self) -> str:
        return self.text or ("±" + str(self.amount) + ("%" if self.percent else ""))
