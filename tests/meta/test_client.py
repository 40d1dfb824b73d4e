"""MetaClient against the real server process; retries against a flaky stand-in and a restart."""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import threading
import uuid
from collections.abc import Iterator

import pytest

from cic_devnet.meta.process import MetaServerProcess, start_meta_server
from cic_seeding.errors import MetadataRequestError, MetadataUnavailableError
from cic_seeding.meta import MetaClient
from tests.helpers import http_server


def new_pointer() -> str:
    return hashlib.sha256(uuid.uuid4().bytes).hexdigest()


@pytest.fixture
def client(meta_server: MetaServerProcess) -> Iterator[MetaClient]:
    with MetaClient(meta_server.url, meta_server.token, retries=2, backoff=0.01) as c:
        yield c


def test_get_put_round_trip(client: MetaClient) -> None:
    p = new_pointer()
    assert client.get(p) is None
    first = client.put(p, {"tags": ["food", "water"]})
    assert first.result == "created"
    assert client.get(p) == {"tags": ["food", "water"]}
    again = client.put(p, {"tags": ["food", "water"]})
    assert (again.result, again.etag) == ("unchanged", first.etag)
    q = new_pointer()
    client.put(q, "0x" + "ab" * 20)
    assert client.get(q) == "0x" + "ab" * 20


def test_put_many_writes_everything_in_order(client: MetaClient) -> None:
    items = [(new_pointer(), {"n": i}) for i in range(200)]
    done = []
    results = client.put_many(items, concurrency=8, on_done=done.append)
    assert [r.pointer for r in results] == [p for p, _ in items]
    assert {r.result for r in results} == {"created"}
    assert len(done) == 200
    assert all(client.get(p) == doc for p, doc in items[::17])
    assert {r.result for r in client.put_many(items, concurrency=8)} == {"unchanged"}


def test_client_error_is_terminal_with_server_message(meta_server: MetaServerProcess) -> None:
    calls = []
    with MetaClient(meta_server.url, "wrong", retries=3, backoff=0.01,
                    on_retry=lambda *a: calls.append(a)) as anon, \
            pytest.raises(MetadataRequestError) as info:
        anon.put(new_pointer(), {})
    assert info.value.status == 401
    assert "Bearer" in str(info.value)
    assert "wrong" not in str(info.value)
    assert calls == []  # 4xx is never retried
    with MetaClient(meta_server.url, meta_server.token) as c, \
            pytest.raises(MetadataRequestError) as info:
        c.get("nothex")
    assert info.value.status == 400


def test_put_many_stops_at_first_terminal_error(meta_server: MetaServerProcess) -> None:
    items = [(new_pointer(), {"n": i}) for i in range(50)]
    items[5] = ("bad", {})
    with MetaClient(meta_server.url, meta_server.token) as c, \
            pytest.raises(MetadataRequestError, match="bad pointer"):
        c.put_many(items, concurrency=2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_server_is_transient_error_naming_url() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    attempts = []
    with MetaClient(url, "t", retries=3, backoff=0.001,
                    on_retry=lambda u, e, n, d: attempts.append(n)) as c, \
            pytest.raises(MetadataUnavailableError) as info:
        c.put(new_pointer(), {})
    assert info.value.transient
    assert url in str(info.value)
    assert "4 attempts" in str(info.value)
    assert attempts == [1, 2, 3]


class _Flaky(http.server.BaseHTTPRequestHandler):
    """Answers each request with the next status of ``script``, then 200."""

    script: list[int] = []

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        status = self.script.pop(0) if self.script else 200
        body = json.dumps({"etag": "e", "result": "created"} if status == 200
                          else {"error": f"status {status}"}).encode()
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[tuple[str, type[_Flaky]]]:
    handler = type("Flaky", (_Flaky,), {"script": []})
    with http_server(handler) as url:
        yield url, handler


def test_5xx_and_429_are_retried(flaky: tuple[str, type[_Flaky]]) -> None:
    url, handler = flaky
    handler.script[:] = [503, 500, 429, 502]
    with MetaClient(url, "t", retries=4, backoff=0.001) as c:
        assert c.put(new_pointer(), {}).result == "created"
    handler.script[:] = [503] * 3
    with MetaClient(url, "t", retries=2, backoff=0.001) as c, \
            pytest.raises(MetadataUnavailableError, match="503"):
        c.put(new_pointer(), {})


def test_retry_carries_a_write_through_a_restart(fresh_server: MetaServerProcess) -> None:
    p = new_pointer()
    retried = threading.Event()
    client = MetaClient(fresh_server.url, fresh_server.token, retries=12, backoff=0.05,
                        max_backoff=0.5, on_retry=lambda *a: retried.set())
    client.put(new_pointer(), {"before": True})
    fresh_server.stop()
    outcome: list[object] = []
    writer = threading.Thread(target=lambda: outcome.append(client.put(p, {"through": 1})))
    writer.start()
    try:
        assert retried.wait(10), "the client never retried"
        restarted = start_meta_server(port=fresh_server.port, db=fresh_server.db,
                                      token=fresh_server.token, schema=fresh_server.schema)
    finally:
        writer.join(30)
    try:
        assert outcome and getattr(outcome[0], "result", None) == "created"
        assert client.get(p) == {"through": 1}
    finally:
        client.close()
        restarted.stop()
