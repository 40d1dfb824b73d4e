"""The circuit breaker: its state machine on a fake clock, then each HTTP client and two importers
against a real HTTP server that keeps failing, counting on the server side what reached it."""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cic_devnet.devnet import Devnet
from cic_devnet.meta.process import start_meta_server
from cic_seeding.chain.rpc import JsonRpc
from cic_seeding.errors import MetadataUnavailableError, RpcUnavailableError, UssdUnavailableError
from cic_seeding.generate.generator import GenerateOptions, generate
from cic_seeding.meta.client import MetaClient
from cic_seeding.remote import CLOSED, HALF_OPEN, OPEN, BreakerPolicy, CircuitBreaker
from cic_seeding.ussd.client import UssdClient
from tests.e2e.procs import clean_env, running
from tests.meta.test_importer import imported_datadir

BREAKER_LOG = "cic_seeding.breaker"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def breaker(clock: FakeClock, threshold: int = 3, cooldown: float = 30.0) -> CircuitBreaker:
    return BreakerPolicy(threshold, cooldown, clock).breaker("the test service at http://x")


def opened(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records
            if r.name == BREAKER_LOG and r.levelno == logging.ERROR]


def closed(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records
            if r.name == BREAKER_LOG and "answers again" in r.getMessage()]


# --- the state machine ------------------------------------------------------------------------


def test_stays_closed_below_the_threshold_and_an_answer_resets_the_count(
        clock: FakeClock) -> None:
    b = breaker(clock)
    assert b.call_failed("refused") is None
    assert b.call_failed("refused") is None
    b.answered()
    assert (b.state, b.failures) == (CLOSED, 0)
    assert b.call_failed("refused") is None and b.call_failed("refused") is None
    assert b.refusal() is None and b.state == CLOSED


def test_opens_at_the_threshold_refuses_with_one_line_and_logs_it_once(
        clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=BREAKER_LOG)
    b = breaker(clock)
    for _ in range(2):
        b.attempt_failed("connection refused")
        assert b.call_failed("connection refused") is None
    line = b.call_failed("HTTP 503")
    assert line == ("the test service at http://x has failed 3 times in a row, each time after "
                    "its retries (last: HTTP 503); not calling it for 30s")
    assert b.state == OPEN
    clock.now += 12.5
    assert b.refusal() == line.replace("for 30s", "for 18s")
    assert b.call_failed("HTTP 503") is not None  # a call in flight when it opened
    assert opened(caplog.records) == [line]


def test_after_the_cooldown_one_probe_goes_through_and_its_answer_closes_it(
        clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=BREAKER_LOG)
    b = breaker(clock, threshold=1, cooldown=5)
    assert b.call_failed("timed out") is not None
    clock.now += 5
    assert b.refusal() is None and b.state == HALF_OPEN  # the probe
    other = b.refusal()
    assert other is not None and other.endswith("one probe request is trying it again")
    assert "has failed once," in other
    b.answered()
    assert (b.state, b.failures) == (CLOSED, 0)
    assert b.refusal() is None
    assert len(opened(caplog.records)) == 1
    assert closed(caplog.records) == ["the test service at http://x answers again; "
                                      "calling it again"]


def test_a_failed_probe_opens_it_for_another_cooldown(clock: FakeClock,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=BREAKER_LOG)
    b = breaker(clock, threshold=2, cooldown=10)
    b.call_failed("refused")
    b.call_failed("refused")
    clock.now += 10
    assert b.refusal() is None
    b.attempt_failed("still refused")
    assert b.state == OPEN
    clock.now += 9
    refusal = b.refusal()
    assert refusal is not None and "(last: still refused); not calling it for 1s" in refusal
    clock.now += 1
    assert b.refusal() is None  # the next probe
    assert len(opened(caplog.records)) == 1 and closed(caplog.records) == []


def test_a_probe_that_never_reports_does_not_block_forever(clock: FakeClock) -> None:
    b = breaker(clock, threshold=1, cooldown=3)
    b.call_failed("refused")
    clock.now += 3
    assert b.refusal() is None  # probe 1 ... never heard of again
    assert b.refusal() is not None
    clock.now += 3
    assert b.refusal() is None  # probe 2


def test_threshold_zero_turns_it_off(clock: FakeClock) -> None:
    b = breaker(clock, threshold=0)
    for _ in range(50):
        assert b.call_failed("refused") is None
    assert b.refusal() is None and b.state == CLOSED


def test_many_threads_open_it_once(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    b = breaker(clock, threshold=5)
    lines: list[str | None] = []
    start = threading.Barrier(16)

    def fail() -> None:
        start.wait()
        lines.append(b.call_failed("refused"))

    threads = [threading.Thread(target=fail) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert lines.count(None) == 4 and len(lines) == 16
    assert len(opened(caplog.records)) == 1 and b.failures == 16


# --- a real HTTP server that keeps failing -----------------------------------------------------


@dataclass
class Failing:
    """What the server does and saw: ``status`` for every request outside ``healthy`` paths."""

    url: str
    status: int = 503
    rpc_ok: bool = False  # answer JSON-RPC with a result instead of ``status``
    seen: Counter[tuple[str, str]] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, method: str, prefix: str = "/") -> int:
        with self.lock:
            return sum(n for (m, p), n in self.seen.items()
                       if m == method and p.startswith(prefix))


@pytest.fixture
def failing() -> Iterator[Failing]:
    """A real HTTP server on 127.0.0.1: ``GET .../_health`` 200, ``GET /meta/...`` 404 (no
    document), anything else ``state.status``; every request counted."""
    state = Failing(url="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return None

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            with state.lock:
                state.seen[(self.command, self.path)] += 1
            if self.path.endswith("/_health"):
                self._send(200, b"ok")
            elif self.command == "GET" and self.path.startswith("/meta/"):
                self._send(404, b'{"error": "not found"}')
            elif state.rpc_ok:
                self._send(200, b'{"jsonrpc": "2.0", "id": 1, "result": "0x1"}')
            else:
                self._send(state.status, b"Service Unavailable")

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_json_rpc_stops_calling_a_failing_node_then_a_probe_closes_it(
        failing: Failing, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=BREAKER_LOG)
    rpc = JsonRpc(failing.url, retries=1, backoff=0.001,
                  breaker=BreakerPolicy(3, 30, clock))
    errors = []
    for _ in range(3):
        with pytest.raises(RpcUnavailableError) as info:
            rpc.call("eth_blockNumber")
        errors.append(str(info.value))
    assert "gave up after 2 attempts" in errors[0]
    assert errors[2].startswith(f"the JSON-RPC node at {failing.url} has failed 3 times in a "
                                "row, each time after its retries (last: HTTP 503); not calling "
                                "it for 30s; check that the node runs")
    assert failing.count("POST") == 6  # 3 calls x 2 attempts
    for _ in range(20):
        with pytest.raises(RpcUnavailableError, match="not calling it for 30s") as info:
            rpc.call("eth_blockNumber")
        assert info.value.exhausted  # outer retry loops pass it on
    assert failing.count("POST") == 6  # nothing reached the node

    failing.rpc_ok = True
    clock.now += 30
    assert rpc.call("eth_blockNumber") == "0x1"  # the probe
    assert rpc.breaker.state == CLOSED and failing.count("POST") == 7
    assert len(opened(caplog.records)) == 1 and len(closed(caplog.records)) == 1


def test_metadata_client_threads_share_one_breaker(failing: Failing) -> None:
    threshold, concurrency, retries = 4, 8, 1
    with MetaClient(failing.url, "t", retries=retries, backoff=0.001,
                    breaker=BreakerPolicy(threshold, 30)) as client:
        with pytest.raises(MetadataUnavailableError):
            client.put_many(((f"{i:064x}", {"n": i}) for i in range(200)),
                            concurrency=concurrency)
        assert client.breaker.state == OPEN
        with pytest.raises(MetadataUnavailableError, match=re.escape(
                f"the metadata server at {failing.url} has failed")):
            client.get("ab" * 32)
    # the calls that were in flight when it opened finished their attempt; nothing after
    assert failing.count("PUT") <= (threshold + concurrency - 1) * (retries + 1)
    assert failing.count("GET") == 0


def test_ussd_client_fails_fast_once_open(failing: Failing, clock: FakeClock) -> None:
    with UssdClient(failing.url + "/ussd", retries=2, backoff=0.001,
                    breaker=BreakerPolicy(2, 30, clock)) as client:
        messages = []
        for phone in ("+254700000001", "+254700000002", "+254700000003"):
            with pytest.raises(UssdUnavailableError) as info:
                client.request("s", phone, "")
            messages.append(str(info.value))
    assert "3 attempts" in messages[0]
    assert messages[1].startswith(f"the USSD gateway at {failing.url}/ussd has failed 2 times")
    assert messages[2] == messages[1]  # refused: no request
    assert failing.count("POST") == 6


# --- importers, as a user runs them -------------------------------------------------------------


def test_ussd_import_stops_calling_a_failing_gateway_and_says_so(
        failing: Failing, module_devnet: Devnet, tmp_path: Path) -> None:
    """Without the breaker each of the 40 users would try the gateway 7 times (280 requests)."""
    users, threshold, concurrency, attempts = 40, 3, 4, 7
    data = tmp_path / "data"
    generate(GenerateOptions(directory=data, count=users, seed=5150, workers=1))
    env = clean_env(CIC_USSD_URL=f"{failing.url}/ussd", CIC_META_URL=f"{failing.url}/meta",
                    CIC_BREAKER_THRESHOLD=str(threshold), CIC_USSD_CONCURRENCY=str(concurrency),
                    CIC_BATCH_SIZE="10", CIC_USSD_MAX_WAIT="1")
    args = ["--dir", str(data), "--devnet", str(module_devnet.directory)]
    with running("cic_ussd/seed.py", *args, cwd=tmp_path, env=env) as run:
        assert run.wait(120) == 1, run.report()
    posts = failing.count("POST", "/ussd")
    assert threshold * attempts <= posts <= (threshold + concurrency - 1) * attempts
    assert f"0 users imported this run (0 already on chain), 0 before, {users} failed" \
        in run.stdout, run.report()
    line = re.compile(rf"the USSD gateway at {re.escape(failing.url)}/ussd has failed \d+ times "
                      r"in a row, each time after its retries \(last: answered 503: Service "
                      r"Unavailable\); not calling it for \d+s")
    assert line.search(run.stdout), run.report()
    opened_lines = [x for x in run.stderr.splitlines() if x.startswith("ERROR cic_seeding.breaker")]
    assert len(opened_lines) == 1 and line.search(opened_lines[0]), run.report()
    assert "Traceback" not in run.stderr


def test_meta_import_stops_with_the_breaker_line_and_a_rerun_completes(
        failing: Failing, tmp_path: Path) -> None:
    concurrency, retries = 4, 1
    data = imported_datadir(tmp_path / "data", count=60)
    env = clean_env(CIC_META_URL=failing.url, CIC_META_TOKEN="t", CIC_BREAKER_THRESHOLD="1",
                    CIC_META_CONCURRENCY=str(concurrency), CIC_META_RETRIES=str(retries),
                    CIC_RPC_RETRIES="1")
    with running("cic_meta/seed.py", "--dir", str(data.root), cwd=tmp_path, env=env) as run:
        assert run.wait(60) == 1, run.report()
    errors = [x for x in run.stderr.splitlines() if x.startswith("error: ")]
    assert len(errors) == 1, run.report()
    assert re.fullmatch(
        rf"error: the metadata server at {re.escape(failing.url)} has failed (once|\d+ times in "
        rf"a row), each time after its retries \(last: PUT {re.escape(failing.url)}/\w+ answered "
        r"503: Service Unavailable\); not calling it for \d+s; check that the server runs "
        r"\(CIC_META_URL; `cic-seed doctor` checks it\), then rerun: an import resumes where "
        r"it stopped", errors[0]), run.report()
    assert failing.count("PUT") <= concurrency * (retries + 1)

    server = start_meta_server(db=str(tmp_path / "meta.db"))
    try:
        env.update(CIC_META_URL=server.url, CIC_META_TOKEN=server.token)
        with running("cic_meta/seed.py", "--dir", str(data.root), cwd=tmp_path,
                     env=env) as rerun:
            assert rerun.wait(120) == 0, rerun.report()
        assert "0 failed" in rerun.stdout, rerun.report()
    finally:
        server.stop()
