"""Amounts in the dataset's smallest unit, expressed in the token's smallest unit.

A data directory states its amounts at ``manifest.decimals``; a token holds them at its own
``decimals()``. Both functions convert *from the dataset to the token*; they differ only in
what they do with a remainder when the token has fewer decimals than the dataset.
"""

from __future__ import annotations


def dataset_to_token(amount: int, dataset_decimals: int, token_decimals: int) -> int:
    """What is paid for ``amount``: rounded down to the token's smallest unit."""
    if token_decimals >= dataset_decimals:
        return amount * _power(token_decimals - dataset_decimals)
    return amount // _power(dataset_decimals - token_decimals)


def dataset_to_token_exact(amount: int, dataset_decimals: int,
                           token_decimals: int) -> int | None:
    """``amount`` in the token's smallest unit; None when the token cannot hold it exactly."""
    if token_decimals >= dataset_decimals:
        return amount * _power(token_decimals - dataset_decimals)
    whole, rest = divmod(amount, _power(dataset_decimals - token_decimals))
    return None if rest else whole


def _power(decimals: int) -> int:
    """``10 ** decimals`` for ``decimals >= 0`` (typed: ``int ** int`` may be a float)."""
    return int(10**decimals)
