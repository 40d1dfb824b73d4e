"""The one way cic-seeding calls a remote: retries with backoff, a circuit breaker, one wording.

Every service the library talks to -- the JSON-RPC node, the metadata server, the USSD
gateway, the custodial engine, the import workers' broker -- is called through this module:

* :class:`Service` says, as data, how messages name a kind of remote ("the JSON-RPC node at
  URL"; the PostgreSQL state store's reconnects have one too) and what to tell the user when
  its retries are spent or its breaker is open.
* :class:`RetryPolicy` (on `tenacity`) retries *transient* errors only
  (:attr:`CicSeedError.transient <cic_seeding.errors.CicSeedError.transient>`), a bounded
  number of times, waiting ``base * 2**n`` seconds (at most ``cap``, times a jitter between
  0.5 and 1) in between; a ``stop`` event cuts a wait short (the last error is raised as it
  was). A terminal error passes straight through. The error it gives up on is marked
  :func:`exhausted` and told how often it was tried, so an outer policy passes it on instead
  of multiplying the attempts.
* :class:`Remote` is one endpoint: a policy, a :class:`CircuitBreaker` and the service's words.
  Its ``attempt`` raises :class:`AttemptFailed` for a transient failure of one request (with a
  short reason for the breaker); any other outcome counts as an answer.
* :func:`poll` waits for something to happen on a remote (receipts mined, a pointer written)
  with a growing pause, never past a deadline, cut short by a stop event.

The circuit breaker counts *calls* that failed even after their retries. After ``threshold`` of
them in a row it opens, and every further call fails at once, without touching the network,
with one line saying what happened::

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
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol, TypeVar

import tenacity

from cic_seeding.errors import (
    CicSeedError,
    CustodialUnavailableError,
    MetadataUnavailableError,
    RpcUnavailableError,
    ServiceUnavailableError,
    StateUnavailableError,
    UssdUnavailableError,
)

T = TypeVar("T")
E = TypeVar("E", bound=CicSeedError)

log = logging.getLogger(__name__)
#: The breaker's opening and closing lines keep the logger name they always had.
breaker_log = logging.getLogger("cic_seeding.breaker")

DEFAULT_BREAKER_THRESHOLD = 8
DEFAULT_BREAKER_COOLDOWN = 30.0
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"

#: ``on_retry(error, retry, delay)``: called before each wait (retry counts from 1).
RetryHook = Callable[[CicSeedError, int, float], None]


# -- what a user reads -----------------------------------------------------------------------
@dataclass(frozen=True)
class Service:
    """How messages speak of one kind of remote, and what they advise (data, no behaviour).

    ``gave_up`` follows "gave up after N attempts; " when a call spent its retries;
    ``when_open`` follows the breaker's line while it refuses calls; ``unavailable`` is the
    error class of that line."""

    name: str
    gave_up: str
    when_open: str
    unavailable: type[CicSeedError] = ServiceUnavailableError

    def at(self, where: str) -> str:
        """``"the JSON-RPC node at http://..."``"""
        return f"{self.name} at {where}"


RPC_NODE = Service(
    "the JSON-RPC node",
    gave_up="is the node running? (`cic-seed doctor` checks it); a rerun resumes",
    when_open="check that the node runs (`cic-seed doctor` checks it), then rerun: the run "
              "resumes where it stopped",
    unavailable=RpcUnavailableError)
METADATA_SERVER = Service(
    "the metadata server",
    gave_up="check that the metadata server is running (CIC_META_URL) and try again; an "
            "import resumes where it stopped",
    when_open="check that the server runs (CIC_META_URL; `cic-seed doctor` checks it), then "
              "rerun: an import resumes where it stopped",
    unavailable=MetadataUnavailableError)
USSD_GATEWAY = Service(
    "the USSD gateway",
    gave_up="is the gateway running? (`cic-seed devnet up --ussd` starts one); a rerun resumes",
    when_open="check that it runs (CIC_USSD_URL; `cic-seed devnet up --ussd` starts one), then "
              "rerun: an import resumes where it stopped",
    unavailable=UssdUnavailableError)
CUSTODIAL_ENGINE = Service(
    "the custodial engine",
    gave_up="are its broker (CIC_CUSTODIAL_BROKER_URL) and workers running? (`cic-seed "
            "doctor` checks them); a rerun resumes",
    when_open="check that the engine runs (`cic-seed doctor` checks it), then rerun: an "
              "import resumes where it stopped",
    unavailable=CustodialUnavailableError)
STATE_STORE = Service(
    "the state store",
    gave_up="is PostgreSQL running at CIC_STATE_URL? a rerun resumes where this run stopped",
    when_open="check that PostgreSQL runs at CIC_STATE_URL, then rerun: the run resumes",
    unavailable=StateUnavailableError)
IMPORT_BROKER = Service(
    "the import broker",
    gave_up="is Redis running at CIC_IMPORT_BROKER_URL? a rerun resumes",
    when_open="check that Redis runs at CIC_IMPORT_BROKER_URL, then rerun: the import resumes "
              "where it stopped")


def exhausted(error: E) -> E:
    """Mark ``error`` as retried to the end here: outer policies pass it on as it is."""
    error.exhausted = True
    return error


def _gave_up(error: CicSeedError, attempts: int, what: str, service: Service | None) -> None:
    doing = f" {what}" if what else ""
    tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
    advice = service.gave_up if service is not None else "rerun to resume"
    note = f"gave up{doing} after {tries}; {advice}"
    error.hint = f"{error.hint}; {note}" if error.hint else note
    exhausted(error)


# -- retries ---------------------------------------------------------------------------------
class AttemptFailed(Exception):
    """One attempt at a remote failed transiently (raised inside :meth:`Remote.call` only).

    ``error`` is what the caller gets if this was the last attempt; ``reason`` its short form
    for the breaker's line ("connection refused"); ``retry_after`` seconds the remote asked
    to be left alone (HTTP Retry-After), if it did."""

    def __init__(self, error: CicSeedError, reason: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.reason = reason or error.message
        self.retry_after = retry_after


class _Interrupted(Exception):
    """The stop event was set during a wait."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a transient failure is tried again.

    ``retries``: tries after the first; the wait before retry ``n`` (from 0) is
    ``min(cap, base * 2**n)`` times a jitter in [0.5, 1]. ``stop`` set during a wait ends the
    call with the last error as it was. Retries are logged at ``log_level``."""

    retries: int = 5
    base: float = 0.2
    cap: float = 10.0
    stop: threading.Event | None = field(default=None, compare=False)
    log_level: int = logging.WARNING

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry ``retry`` (0: the first)."""
        return min(self.cap, self.base * (1 << min(retry, 64))) * (0.5 + random.random() / 2)

    @staticmethod
    def retryable(error: BaseException) -> bool:
        """Whether ``error`` is worth another attempt: a transient :class:`CicSeedError` that
        no inner policy retried to the end yet."""
        return isinstance(error, CicSeedError) and error.transient and not error.exhausted

    def call(self, fn: Callable[[], T], *, what: str, service: Service | None = None) -> T:
        """``fn()``, retried on a transient error; ``what`` ("eth: submitting registrations")
        and ``service`` word the warning lines and the hint of the error given up on."""

        def give_up(error: BaseException, attempts: int) -> NoReturn:
            assert isinstance(error, CicSeedError)
            _gave_up(error, attempts, what, service)
            raise error

        return self._run(fn, self.retryable, give_up, what)

    def _run(self, fn: Callable[[], T], worth: Callable[[BaseException], bool],
             give_up: Callable[[BaseException, int], NoReturn], what: str,
             on_retry: RetryHook | None = None) -> T:
        last: list[BaseException] = []

        def shown(error: BaseException) -> Any:
            return error.error if isinstance(error, AttemptFailed) else error

        def before_sleep(state: tenacity.RetryCallState) -> None:
            error = _outcome(state)
            last[:] = [error]
            delay, retry = state.upcoming_sleep, state.attempt_number
            log.log(self.log_level, "%s%s; retry %d/%d in %.1fs", f"{what}: " if what else "",
                    shown(error), retry, self.retries, delay)
            if on_retry is not None:
                on_retry(shown(error), retry, delay)

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(max(0, self.retries) + 1),
            wait=self._wait, retry=tenacity.retry_if_exception(worth), sleep=self._sleep,
            before_sleep=before_sleep,
            retry_error_callback=lambda state: give_up(_outcome(state), state.attempt_number))
        try:
            return retrying(fn)
        except _Interrupted:
            pass
        error = last[0]
        raise error.error if isinstance(error, AttemptFailed) else error

    def _wait(self, state: tenacity.RetryCallState) -> float:
        delay = self.delay(state.attempt_number - 1)
        error = _outcome(state)
        if isinstance(error, AttemptFailed) and error.retry_after is not None:
            delay = max(delay, min(error.retry_after, self.cap))
        return delay

    def _sleep(self, seconds: float) -> None:
        if self.stop is None:
            time.sleep(seconds)
        elif self.stop.wait(seconds):
            raise _Interrupted


def _outcome(state: tenacity.RetryCallState) -> BaseException:
    assert state.outcome is not None
    error = state.outcome.exception()
    assert error is not None
    return error


class Remote:
    """One endpoint of a :class:`Service` at ``where`` (its URL), called with ``policy`` and a
    circuit breaker shared by every thread of the client that owns it."""

    def __init__(self, service: Service, where: str, policy: RetryPolicy,
                 breaker: BreakerPolicy | None = None) -> None:
        self.service = service
        self.where = where
        self.policy = policy
        self.breaker = (breaker or BreakerPolicy()).breaker(service.at(where))

    def __repr__(self) -> str:
        return f"Remote({self.service.at(self.where)!r})"

    def call(self, attempt: Callable[[], T], *, on_retry: RetryHook | None = None) -> T:
        """``attempt()`` until it answers: it raises :class:`AttemptFailed` for a transient
        failure (retried; once the retries are spent its error is raised, worded with the
        service's ``gave_up``, or the breaker's line if that failure opened it); whatever else
        it returns or raises is an answer and passes through. While the breaker is open the
        call fails at once with its line."""

        def once() -> T:
            refusal = self.breaker.refusal()
            if refusal is not None:
                raise self._open(refusal)
            try:
                answer = attempt()
            except AttemptFailed as failed:
                self.breaker.attempt_failed(failed.reason)
                raise
            except CicSeedError:
                self.breaker.answered()  # it answered, if not as hoped
                raise
            self.breaker.answered()
            return answer

        def give_up(failed: BaseException, attempts: int) -> NoReturn:
            assert isinstance(failed, AttemptFailed)
            line = self.breaker.call_failed(failed.reason)
            if line is not None:
                raise self._open(line) from failed.error
            _gave_up(failed.error, attempts, "", self.service)
            raise failed.error from failed.__cause__

        return self.policy._run(once, lambda e: isinstance(e, AttemptFailed), give_up, "",
                                on_retry)

    def _open(self, line: str) -> CicSeedError:
        return exhausted(self.service.unavailable(line, hint=self.service.when_open))


# -- waiting for something to happen ---------------------------------------------------------
def poll(step: Callable[[], bool], *, until: float, first: float, cap: float,
         factor: float = 2.0, stop: threading.Event | None = None,
         between: Callable[[], None] | None = None) -> bool:
    """Call ``step()`` until it returns True (then True); False once ``until`` (a
    :func:`time.monotonic` deadline) has passed or ``stop`` is set. Between calls it waits
    ``first``, growing by ``factor`` up to ``cap`` seconds and never past ``until``, or calls
    ``between()`` instead (a devnet without automine mines rather than waits)."""
    delay = first
    while True:
        if step():
            return True
        remaining = until - time.monotonic()
        if remaining <= 0 or (stop is not None and stop.is_set()):
            return False
        if between is not None:
            between()
        elif (stop or threading.Event()).wait(min(delay, remaining)):
            return False
        delay = min(cap, delay * factor)


# -- the circuit breaker ---------------------------------------------------------------------
class _BreakerSettings(Protocol):
    @property
    def breaker_threshold(self) -> int: ...

    @property
    def breaker_cooldown(self) -> float: ...


@dataclass(frozen=True)
class BreakerPolicy:
    """How many failed calls in a row open a breaker, how long it stays open, and the clock
    it reads (a seam for tests)."""

    threshold: int = DEFAULT_BREAKER_THRESHOLD
    cooldown: float = DEFAULT_BREAKER_COOLDOWN
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)

    @classmethod
    def from_settings(cls, settings: _BreakerSettings) -> BreakerPolicy:
        """From ``breaker_threshold`` and ``breaker_cooldown`` of the settings."""
        return cls(settings.breaker_threshold, settings.breaker_cooldown)

    def breaker(self, service: str) -> CircuitBreaker:
        """A new breaker for ``service`` (words for messages: "the metadata server at URL")."""
        return CircuitBreaker(service, self)


class CircuitBreaker:
    """State of one service, shared by every thread of the client that owns it.

    :meth:`Remote.call` calls :meth:`refusal` before each attempt (a message means: do not
    call, fail with it), :meth:`answered` when the service answered, :meth:`attempt_failed`
    after an attempt failed transiently, and :meth:`call_failed` when a call gave up after its
    retries (it returns the refusal when that failure opened the breaker).
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
                breaker_log.info("%s: trying one request after %gs", self.service,
                                 self.policy.cooldown)
                return None
            return self._line()

    def answered(self) -> None:
        """The service answered (any answer that is not a transient failure)."""
        with self._lock:
            was, self.state, self.failures = self.state, CLOSED, 0
        if was != CLOSED:
            breaker_log.warning("%s answers again; calling it again", self.service)

    def attempt_failed(self, reason: str) -> None:
        """One attempt failed transiently; a failed probe opens the breaker again."""
        with self._lock:
            self.last = reason
            if self.state == HALF_OPEN:
                self.state, self._opened_at = OPEN, self.policy.clock()
                breaker_log.info("%s still fails (%s); not calling it for %gs", self.service,
                                 reason, self.policy.cooldown)

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
                breaker_log.error("%s", line)
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
