"""Retry of transient errors with exponential backoff (terminal errors pass straight through)."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import TypeVar

from cic_seeding.errors import CicSeedError

T = TypeVar("T")
log = logging.getLogger(__name__)


def with_retries(fn: Callable[[], T], *, what: str, retries: int = 5, base: float = 0.2,
                 cap: float = 10.0, stop: threading.Event | None = None) -> T:
    """Call ``fn``; on a transient :class:`CicSeedError` wait and try again up to ``retries``.

    The wait doubles each time (with jitter) up to ``cap`` seconds; ``stop`` cuts it short.
    The last error is re-raised with how often it was tried.
    """
    attempt = 0
    while True:
        try:
            return fn()
        except CicSeedError as exc:
            if not exc.transient or exc.exhausted or attempt >= retries:
                if exc.transient and not exc.exhausted:
                    exc.hint = (exc.hint + "; " if exc.hint else "") + (
                        f"gave up {what} after {attempt + 1} attempts; rerun to resume")
                raise
            delay = min(cap, base * 2 ** attempt) * (0.5 + random.random() / 2)
            attempt += 1
            log.warning("%s: %s; retry %d/%d in %.1fs", what, exc, attempt, retries, delay)
            if stop is not None:
                if stop.wait(delay):
                    raise
            else:
                threading.Event().wait(delay)
