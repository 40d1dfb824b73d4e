"""Reorg detection: stored block hashes that the chain no longer has."""

from __future__ import annotations

from collections.abc import Mapping


def rewind_point(stored: Mapping[int, str], current: Mapping[int, str]) -> int | None:
    """The block to resume from after a reorg, or None when every stored hash still matches.

    ``current`` holds the chain's hashes for the stored numbers (missing: the chain is shorter
    now). The answer is one past the highest stored block below the lowest mismatch, so every
    block that may have changed is read again; with no such block it is the lowest mismatch.
    """
    mismatched = [n for n, h in stored.items() if current.get(n, "").lower() != h.lower()]
    if not mismatched:
        return None
    lowest = min(mismatched)
    below = [n for n in stored if n < lowest]
    return max(below) + 1 if below else lowest
