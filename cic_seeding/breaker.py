"""A circuit breaker for one service (the JSON-RPC node, the metadata server, the USSD gateway).

The HTTP clients retry a transient failure a bounded number of times with backoff; that rides
out a restart. The breaker sits on top: it counts *requests* that failed even after those
retries. After ``threshold`` of them in a row it opens, and every further call fails at once,
without touching the network, with one line saying what happened::

    the metadata server at http://127.0.0.1:8000 has failed 8 times in a row, each time after
    its retries (last: connection refused or reset); not calling it for 30s

After ``cooldown`` seconds one call is let through as a probe (half-open): if it gets an
answer the breaker closes, otherwise it opens for another cool-down. Opening and closing are
logged once each. A success resets the count; ``threshold = 0`` turns the breaker off.

::

    closed --threshold failed calls in a row--> open --cooldown--> half-open (one probe)
      ^                                          ^                     | attempt failed
      +------------- an answer ------------------+---------------------+
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cic_seeding.config import Settings

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 8
DEFAULT_COOLDOWN = 30.0
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


@dataclass(frozen=True)
class BreakerPolicy:
    """How many failed calls in a row open a breaker, how long it stays open, and the clock
    it reads (a seam for tests)."""

    threshold: int = DEFAULT_THRESHOLD
    cooldown: float = DEFAULT_COOLDOWN
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> BreakerPolicy:
        return cls(settings.breaker_threshold, settings.breaker_cooldown)

    def breaker(self, service: str) -> CircuitBreaker:
        """A new breaker for ``service`` (words for messages: "the metadata server at URL")."""
        return CircuitBreaker(service, self)


class CircuitBreaker:
    """State of one service, shared by every thread of the client that owns it.

    A client calls :meth:`refusal` before each attempt (a message means: do not call, fail
    with it), :meth:`answered` when the service answered, :meth:`attempt_failed` after an
    attempt failed transiently, and :meth:`call_failed` when a call gave up after its retries
    (it returns the refusal when that failure opened the breaker).
    """

    def __init__(self, service: str, policy: BreakerPolicy | None = None) -> None:
        self.service = service
        self.policy = policy or BreakerPolicy()
        self.state = CLOSED
        self.failures = 0  # calls failed in a row
        self.last = ""  # why the last attempt failed
        self._opened_at = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.service!r}, {self.state}, failures={self.failures})"

    @property
    def enabled(self) -> bool:
        return self.policy.threshold > 0

    def refusal(self) -> str | None:
        """None when a call may go ahead; else the line to fail it with. After the cool-down
        the first caller is let through as the probe; the others are refused until it ends."""
        if not self.enabled:
            return None
        with self._lock:
            if self.state == CLOSED:
                return None
            if self._remaining() <= 0:  # a probe that never reported does not block forever
                self.state, self._opened_at = HALF_OPEN, self.policy.clock()
                log.info("%s: trying one request after %gs", self.service, self.policy.cooldown)
                return None
            return self._line()

    def answered(self) -> None:
        """The service answered (any answer that is not a transient failure)."""
        with self._lock:
            was, self.state, self.failures = self.state, CLOSED, 0
        if was != CLOSED:
            log.warning("%s answers again; calling it again", self.service)

    def attempt_failed(self, reason: str) -> None:
        """One attempt failed transiently; a failed probe opens the breaker again."""
        with self._lock:
            self.last = reason
            if self.state == HALF_OPEN:
                self.state, self._opened_at = OPEN, self.policy.clock()
                log.info("%s still fails (%s); not calling it for %gs", self.service, reason,
                         self.policy.cooldown)

    def call_failed(self, reason: str) -> str | None:
        """A call gave up after its retries. Returns the refusal line when the breaker is open
        (this failure opened it, or another caller's did), so the caller raises that."""
        if not self.enabled:
            return None
        with self._lock:
            self.last = reason
            self.failures += 1
            if self.state == CLOSED and self.failures >= self.policy.threshold:
                self.state, self._opened_at = OPEN, self.policy.clock()
                line = self._line()
                log.error("%s", line)
                return line
            return self._line() if self.state != CLOSED else None

    def _remaining(self) -> float:
        return self._opened_at + self.policy.cooldown - self.policy.clock()

    def _line(self) -> str:
        if self.state == HALF_OPEN:
            pause = "one probe request is trying it again"
        else:
            pause = f"not calling it for {max(1, math.ceil(self._remaining()))}s"
        times = "once" if self.failures == 1 else f"{self.failures} times in a row"
        return (f"{self.service} has failed {times}, each time after its retries "
                f"(last: {self.last}); {pause}")
