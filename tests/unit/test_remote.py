"""The one retry and circuit-breaker policy (cic_seeding.remote), without a network: what is
retried and how often, what the user reads when it gives up, the stop event, the breaker seen
through a Remote, and that an error given up on is not retried again by an outer policy."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from cic_seeding.errors import (
    CicSeedError,
    MetadataUnavailableError,
    RpcError,
    RpcUnavailableError,
    ServiceUnavailableError,
    SignerError,
)
from cic_seeding.remote import (
    CLOSED,
    IMPORT_BROKER,
    METADATA_SERVER,
    OPEN,
    RPC_NODE,
    AttemptFailed,
    BreakerPolicy,
    Remote,
    RetryPolicy,
    exhausted,
    poll,
)

FAST = RetryPolicy(retries=3, base=0.001, cap=0.002)


class Flaky:
    """Fails with ``make()`` the first ``failures`` calls, then answers ``"ok"``."""

    def __init__(self, failures: int, make: type[CicSeedError] = RpcUnavailableError) -> None:
        self.failures, self.make, self.calls = failures, make, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.make(f"node away (call {self.calls})")
        return "ok"


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


# --- RetryPolicy ------------------------------------------------------------------------------


def test_transient_errors_are_retried_until_an_answer() -> None:
    fn = Flaky(3)
    assert FAST.call(fn, what="eth: checking the chain") == "ok"
    assert fn.calls == 4


def test_transient_error_past_the_budget_is_exhausted_with_the_hint(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="cic_seeding.remote")
    fn = Flaky(10)
    with pytest.raises(RpcUnavailableError) as info:
        FAST.call(fn, what="eth: submitting registrations")
    assert fn.calls == 4
    assert info.value.exhausted
    assert str(info.value) == ("node away (call 4); gave up eth: submitting registrations after "
                               "4 attempts; rerun to resume")
    retries = [r.getMessage() for r in caplog.records]
    assert len(retries) == 3
    assert retries[0].startswith("eth: submitting registrations: node away (call 1); retry 1/3 "
                                 "in ")


def test_the_service_words_the_hint_and_an_earlier_hint_is_kept() -> None:
    def away() -> None:
        raise ServiceUnavailableError("cannot queue task", hint="the queue is 'q'")

    with pytest.raises(ServiceUnavailableError) as info:
        RetryPolicy(retries=0).call(away, what="eth: queueing", service=IMPORT_BROKER)
    assert info.value.hint == (f"the queue is 'q'; gave up eth: queueing after 1 attempt; "
                               f"{IMPORT_BROKER.gave_up}")


def test_a_terminal_error_passes_straight_through() -> None:
    fn = Flaky(1, make=SignerError)
    with pytest.raises(SignerError) as info:
        FAST.call(fn, what="eth: submitting")
    assert fn.calls == 1
    assert info.value.hint is None and not info.value.exhausted

    class Bug(Exception):
        pass

    def bug() -> None:
        raise Bug("not ours")

    with pytest.raises(Bug):
        FAST.call(bug, what="eth: submitting")


def test_an_exhausted_error_is_not_retried_by_an_outer_policy() -> None:
    inner = Flaky(100)
    outer_calls = []

    def through_the_inner_policy() -> str:
        outer_calls.append(1)
        return FAST.call(inner, what="inner")

    with pytest.raises(RpcUnavailableError) as info:
        RetryPolicy(retries=5, base=0.001).call(through_the_inner_policy, what="outer")
    assert len(outer_calls) == 1 and inner.calls == 4  # not 6 x 4
    assert "gave up inner after 4 attempts" in str(info.value)
    assert "gave up outer" not in str(info.value)

    marked = exhausted(RpcUnavailableError("already retried"))

    def already() -> None:
        outer_calls.append(1)
        raise marked

    with pytest.raises(RpcUnavailableError) as again:
        FAST.call(already, what="outer")
    assert again.value is marked and again.value.hint is None and len(outer_calls) == 2


def test_the_stop_event_cuts_the_wait_short() -> None:
    stop = threading.Event()
    fn = Flaky(10)
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with pytest.raises(RpcUnavailableError) as info:
        RetryPolicy(retries=3, base=30.0, cap=30.0, stop=stop).call(fn, what="sync eth")
    assert time.monotonic() - started < 5
    assert fn.calls == 1
    # the error as it was: not given up on, so a rerun or an outer loop may still try
    assert info.value.hint is None and not info.value.exhausted


def test_delays_double_up_to_the_cap_with_jitter() -> None:
    policy = RetryPolicy(base=0.2, cap=10.0)
    for retry, full in [(0, 0.2), (1, 0.4), (3, 1.6), (6, 10.0), (500, 10.0)]:
        delays = [policy.delay(retry) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in delays), (retry, min(delays), max(delays))
    assert RetryPolicy.retryable(RpcUnavailableError("x"))
    assert not RetryPolicy.retryable(exhausted(RpcUnavailableError("x")))
    assert not RetryPolicy.retryable(RpcError("x")) and not RetryPolicy.retryable(OSError())


# --- Remote: retries, the service's words and the breaker ------------------------------------


def refused(n: list[int]) -> str:
    n[0] += 1
    raise AttemptFailed(RpcUnavailableError("RPC http://node does not answer (connection "
                                            "refused)"), "connection refused")


def test_a_remote_gives_up_with_the_service_hint() -> None:
    remote = Remote(RPC_NODE, "http://node", FAST, BreakerPolicy(threshold=0))
    calls = [0]
    with pytest.raises(RpcUnavailableError) as info:
        remote.call(lambda: refused(calls))
    assert calls == [4] and info.value.exhausted
    assert str(info.value) == ("RPC http://node does not answer (connection refused); gave up "
                               "after 4 attempts; is the node running? (`cic-seed doctor` "
                               "checks it); a rerun resumes")


def test_a_remote_passes_answers_and_terminal_errors_through() -> None:
    remote = Remote(RPC_NODE, "http://node", FAST)
    assert remote.call(lambda: 42) == 42

    def node_error() -> None:
        raise RpcError("eth_call: execution reverted")

    with pytest.raises(RpcError, match="reverted") as info:
        remote.call(node_error)
    assert info.value.hint is None
    assert remote.breaker.state == CLOSED and remote.breaker.failures == 0


def test_the_breaker_opens_after_the_threshold_and_one_probe_closes_it() -> None:
    clock = Clock()
    remote = Remote(METADATA_SERVER, "http://meta", RetryPolicy(retries=1, base=0.001),
                    BreakerPolicy(threshold=2, cooldown=30, clock=clock))
    calls = [0]

    def down() -> str:
        calls[0] += 1
        raise AttemptFailed(MetadataUnavailableError("PUT http://meta/ab answered 503: busy"),
                            retry_after=0)

    with pytest.raises(MetadataUnavailableError, match="gave up after 2 attempts"):
        remote.call(down)
    with pytest.raises(MetadataUnavailableError) as info:
        remote.call(down)
    line = ("the metadata server at http://meta has failed 2 times in a row, each time after "
            "its retries (last: PUT http://meta/ab answered 503: busy); not calling it for 30s")
    assert str(info.value) == f"{line}; {METADATA_SERVER.when_open}"
    assert info.value.exhausted and remote.breaker.state == OPEN and calls == [4]

    for _ in range(5):  # refused at once: nothing reaches the server
        with pytest.raises(MetadataUnavailableError, match="not calling it for 30s") as info:
            remote.call(down)
        assert info.value.exhausted
    assert calls == [4]

    clock.now += 30
    assert remote.call(lambda: "answered") == "answered"  # the probe
    assert remote.breaker.state == CLOSED and remote.breaker.failures == 0


def test_a_failed_probe_opens_the_breaker_again() -> None:
    clock = Clock()
    remote = Remote(RPC_NODE, "http://node", RetryPolicy(retries=0),
                    BreakerPolicy(threshold=1, cooldown=10, clock=clock))
    calls = [0]
    with pytest.raises(RpcUnavailableError, match="has failed once"):
        remote.call(lambda: refused(calls))
    clock.now += 10
    with pytest.raises(RpcUnavailableError, match="not calling it for 10s"):
        remote.call(lambda: refused(calls))  # the probe: it fails, the breaker opens again
    assert calls == [2] and remote.breaker.state == OPEN


def test_retry_after_and_the_on_retry_hook() -> None:
    seen: list[tuple[str, int, float]] = []
    remote = Remote(METADATA_SERVER, "http://meta", RetryPolicy(retries=2, base=0.001, cap=0.2))
    left = [2]

    def busy() -> str:
        if left[0]:
            left[0] -= 1
            raise AttemptFailed(MetadataUnavailableError("answered 429"), retry_after=0.05)
        return "ok"

    assert remote.call(busy, on_retry=lambda e, n, d: seen.append((str(e), n, d))) == "ok"
    assert [(e, n) for e, n, _ in seen] == [("answered 429", 1), ("answered 429", 2)]
    assert all(d >= 0.05 for _, _, d in seen)


def test_a_stopped_remote_raises_the_last_error_as_it_was() -> None:
    stop = threading.Event()
    stop.set()
    remote = Remote(RPC_NODE, "http://node", RetryPolicy(retries=5, base=10, stop=stop))
    calls = [0]
    with pytest.raises(RpcUnavailableError) as info:
        remote.call(lambda: refused(calls))
    assert calls == [1] and info.value.hint is None and not info.value.exhausted
    assert remote.breaker.failures == 0  # the call did not give up: it was stopped


# --- poll -------------------------------------------------------------------------------------


def test_poll_until_done_or_the_deadline() -> None:
    ticks = []
    assert poll(lambda: (ticks.append(1), len(ticks) == 3)[1], until=time.monotonic() + 5,
                first=0.001, cap=0.001)
    assert len(ticks) == 3
    started = time.monotonic()
    assert not poll(lambda: False, until=started + 0.1, first=0.01, cap=0.05)
    assert 0.1 <= time.monotonic() - started < 1


def test_poll_calls_between_instead_of_waiting_and_stops() -> None:
    mined = []
    assert poll(lambda: len(mined) == 2, until=time.monotonic() + 60, first=60, cap=60,
                between=lambda: mined.append(1))
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    assert not poll(lambda: False, until=started + 60, first=60, cap=60, stop=stop)
    assert time.monotonic() - started < 5
