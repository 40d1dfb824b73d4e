"""Batch writes (``PUT /_batch``, the devnet server's extension) and the client's use of them:
stored exactly as one PUT per document stores, refused per document as a PUT would be, and a
server without them gets one PUT per document (SQLite and PostgreSQL, real server processes).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import uuid
from collections.abc import Iterator

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cic_devnet.meta.app import MAX_BODY, canonical, etag_of
from cic_devnet.meta.process import MetaServerProcess
from cic_seeding.errors import MetadataRequestError
from cic_seeding.meta import MetaClient
from cic_seeding.meta.client import PutResult
from tests.helpers import http_server


def new_pointer() -> str:
    return hashlib.sha256(uuid.uuid4().bytes).hexdigest()


def auth(server: MetaServerProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token}"}


def put_batch(server: MetaServerProcess, entries: object,
              headers: dict[str, str] | None = None) -> requests.Response:
    return requests.put(f"{server.url}/_batch", json=entries,
                        headers=auth(server) if headers is None else headers, timeout=30)


def stats(server: MetaServerProcess) -> dict[str, float]:
    data: dict[str, float] = requests.get(f"{server.url}/_stats", timeout=30).json()
    return data


def test_limits_are_discoverable(meta_server: MetaServerProcess) -> None:
    limits = requests.get(f"{meta_server.url}/_batch", timeout=30).json()
    assert limits["max_documents"] >= 100 and limits["max_bytes"] >= 1024 * 1024
    assert limits["max_document_bytes"] == MAX_BODY


def test_a_batch_stores_each_document_as_its_own_put_would(
        meta_server: MetaServerProcess) -> None:
    docs = [{"vcard": "QkVHSU4=", "name": "Wanjikũ", "n": i} for i in range(5)] + ["0xAbC"]
    pointers = [new_pointer() for _ in docs]
    reply = put_batch(meta_server, {"documents": [
        {"pointer": p, "document": d} for p, d in zip(pointers, docs, strict=True)]})
    assert reply.status_code == 200
    results = reply.json()["results"]
    assert [(r["pointer"], r["status"], r["result"], r["version"]) for r in results] == [
        (p, 201, "created", 1) for p in pointers]
    for pointer, doc, result in zip(pointers, docs, results, strict=True):
        got = requests.get(f"{meta_server.url}/{pointer}", timeout=30)
        assert got.json() == doc and got.text == canonical(doc)
        assert got.headers["etag"] == f'"{etag_of(canonical(doc))}"' == f'"{result["etag"]}"'
        # the same document by the CIC protocol: unchanged, same ETag, same version
        again = requests.put(f"{meta_server.url}/{pointer}", json=doc, headers=auth(meta_server),
                             timeout=30)
        assert (again.json()["result"], again.json()["etag"], again.json()["version"]) == (
            "unchanged", result["etag"], 1)
    changed = put_batch(meta_server, {"documents": [
        {"pointer": pointers[0], "document": docs[0]},
        {"pointer": pointers[1], "document": {"other": True}}]}).json()["results"]
    assert [(r["result"], r["version"]) for r in changed] == [("unchanged", 1), ("updated", 2)]


def test_a_pointer_twice_in_one_batch_is_two_puts_in_order(
        meta_server: MetaServerProcess) -> None:
    p = new_pointer()
    results = put_batch(meta_server, {"documents": [
        {"pointer": p, "document": {"v": 1}}, {"pointer": p, "document": {"v": 1}},
        {"pointer": p, "document": {"v": 2}}]}).json()["results"]
    assert [(r["result"], r["version"]) for r in results] == [
        ("created", 1), ("unchanged", 1), ("updated", 2)]
    assert requests.get(f"{meta_server.url}/{p}", timeout=30).json() == {"v": 2}


def test_a_bad_document_costs_itself_alone(meta_server: MetaServerProcess) -> None:
    good, big, other = new_pointer(), new_pointer(), new_pointer()
    reply = put_batch(meta_server, {"documents": [
        {"pointer": good, "document": {"ok": 1}},
        {"pointer": "A" * 64, "document": {}},
        {"pointer": big, "document": {"x": "y" * MAX_BODY}},
        {"document": {}},
        "not an entry",
        {"pointer": other, "document": {"ok": 2}},
    ]})
    assert reply.status_code == 200
    results = reply.json()["results"]
    assert [r["status"] for r in results] == [201, 400, 413, 400, 400, 201]
    assert "64 lowercase hex" in results[1]["error"] and "limit" in results[2]["error"]
    assert requests.get(f"{meta_server.url}/{good}", timeout=30).json() == {"ok": 1}
    assert requests.get(f"{meta_server.url}/{other}", timeout=30).json() == {"ok": 2}
    assert requests.get(f"{meta_server.url}/{big}", timeout=30).status_code == 404


@pytest.mark.parametrize(("body", "headers", "status"), [
    ({"documents": [{"pointer": "0" * 64, "document": {}}]}, {}, 401),
    ({"documents": [{"pointer": "0" * 64, "document": {}}]},
     {"Authorization": "Bearer wrong"}, 401),
    ({"documents": []}, None, 400),
    ([{"pointer": "0" * 64, "document": {}}], None, 400),
    ({"documents": [{"pointer": f"{i:064x}", "document": {}} for i in range(1001)]}, None, 413),
])
def test_a_batch_refused_whole_stores_nothing(meta_server: MetaServerProcess, body: object,
                                              headers: dict[str, str] | None,
                                              status: int) -> None:
    reply = put_batch(meta_server, body, headers)
    assert reply.status_code == status and reply.json()["error"]
    assert requests.get(f"{meta_server.url}/{'0' * 64}", timeout=30).status_code == 404


def test_unreadable_batches_are_refused_whole(meta_server: MetaServerProcess) -> None:
    p = new_pointer()
    for data, ctype, status in [
            (f'{{"documents": [{{"pointer": "{p}", "document": NaN}}]}}', "application/json",
             400),
            ('{"documents": [', "application/json", 400),
            (json.dumps({"documents": [{"pointer": p, "document": 1}]}), "text/plain", 415)]:
        reply = requests.put(f"{meta_server.url}/_batch", data=data, timeout=30,
                             headers={**auth(meta_server), "Content-Type": ctype})
        assert reply.status_code == status, reply.text
    assert requests.get(f"{meta_server.url}/{p}", timeout=30).status_code == 404


def test_stats_count_what_was_stored(meta_server: MetaServerProcess) -> None:
    before = stats(meta_server)
    pointers = [new_pointer() for _ in range(3)]
    put_batch(meta_server, {"documents": [{"pointer": p, "document": {}} for p in pointers]})
    requests.put(f"{meta_server.url}/{pointers[0]}", json={}, headers=auth(meta_server),
                 timeout=30)
    after = stats(meta_server)
    assert after["documents"] - before["documents"] == 4
    assert after["created"] - before["created"] == 3
    assert after["unchanged"] - before["unchanged"] == 1
    assert after["write_requests"] - before["write_requests"] == 2
    assert after["active_seconds"] > before["active_seconds"]


_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                  st.text(max_size=12))
_DOC = st.recursive(_LEAF, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8)
_ENTRY = st.one_of(
    st.fixed_dictionaries({"pointer": st.sampled_from([f"{i:064x}" for i in range(1, 6)]),
                           "document": _DOC}),
    st.fixed_dictionaries({"pointer": st.text(max_size=66), "document": _DOC}),
    _DOC)


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(entries=st.lists(_ENTRY, min_size=1, max_size=6))
def test_batches_never_answer_5xx_and_keep_each_answer(meta_server: MetaServerProcess,
                                                       entries: list[object]) -> None:
    """Whatever the entries, the server answers below 500; an entry reported stored is
    stored whole as its canonical JSON, one reported refused left its pointer as it was."""
    body = json.dumps({"documents": entries}).encode("utf-8", "surrogatepass")
    with requests.Session() as http:
        watched = {e["pointer"] for e in entries
                   if isinstance(e, dict) and isinstance(e.get("pointer"), str)
                   and len(e["pointer"]) == 64 and e["pointer"].startswith("0" * 60)}
        before = {p: http.get(f"{meta_server.url}/{p}", timeout=30).content for p in watched}
        reply = http.put(f"{meta_server.url}/_batch", data=body, timeout=30,
                         headers={**auth(meta_server), "Content-Type": "application/json"})
        assert reply.status_code < 500, reply.text
        if reply.status_code != 200:
            return
        results = reply.json()["results"]
        assert len(results) == len(entries)
        last: dict[str, object] = {}
        for entry, result in zip(entries, results, strict=True):
            if result["status"] in (200, 201):
                assert isinstance(entry, dict)
                last[entry["pointer"]] = entry["document"]
        for pointer in watched:
            got = http.get(f"{meta_server.url}/{pointer}", timeout=30)
            if pointer in last:
                assert got.text == canonical(last[pointer]) and got.json() == last[pointer]
            else:
                assert got.content == before[pointer]


# --- the client ---------------------------------------------------------------------------


def test_client_batches_store_what_single_puts_store(meta_server: MetaServerProcess) -> None:
    items = [(new_pointer(), {"tags": ["food", str(i)], "name": "Wanjikũ"}) for i in range(250)]
    items += [(new_pointer(), "0x" + "ab" * 20)]
    before = stats(meta_server)
    with MetaClient(meta_server.url, meta_server.token, batch=100) as client:
        assert client.batch_size() == 100
        done: list[PutResult] = []
        results = client.put_many(items, concurrency=4, on_done=done.append)
    assert [r.pointer for r in results] == [p for p, _ in items] and len(done) == len(items)
    assert {r.result for r in results} == {"created"}
    assert stats(meta_server)["write_requests"] - before["write_requests"] == 3
    with MetaClient(meta_server.url, meta_server.token) as single:  # the CIC protocol
        assert single.batch_size() == 0
        again = [single.put(p, d) for p, d in items]
        assert [(r.result, r.etag) for r in again] == [("unchanged", r.etag) for r in results]
        assert all(single.get(p) == d for p, d in items)


def test_client_batch_refusals_are_per_document(meta_server: MetaServerProcess) -> None:
    good = [(new_pointer(), {"n": i}) for i in range(4)]
    nan = (new_pointer(), {"x": float("nan")})  # not JSON: the batch is refused whole
    items = [good[0], ("bad", {}), good[1], nan, good[2], good[3]]
    with MetaClient(meta_server.url, meta_server.token, batch=3) as client:
        outcomes = client.put_batch(items)
        assert [type(o).__name__ for o in outcomes] == [
            "PutResult", "MetadataRequestError", "PutResult", "MetadataRequestError",
            "PutResult", "PutResult"]
        assert isinstance(outcomes[1], MetadataRequestError) and outcomes[1].status == 400
        assert f"PUT {meta_server.url}/bad was refused with 400: bad pointer" in str(outcomes[1])
        assert isinstance(outcomes[3], MetadataRequestError) and "NaN" in str(outcomes[3])
        assert all(client.get(p) == d for p, d in good)
        assert client.get(nan[0]) is None
        with pytest.raises(MetadataRequestError, match="was refused with 400"):
            client.put_many(items, concurrency=2)  # the first refusal, whichever came first


def test_client_with_a_wrong_token_stops(meta_server: MetaServerProcess) -> None:
    with MetaClient(meta_server.url, "wrong", batch=100) as client, \
            pytest.raises(MetadataRequestError) as info:
        client.put_batch([(new_pointer(), {})])
    assert info.value.status == 401 and info.value.fatal


class _CicProtocolOnly(http.server.BaseHTTPRequestHandler):
    """A stand-in for a CIC metadata server without the extension: PUT /<pointer> only,
    anything else (GET /_batch included) answered ``other``."""

    other: tuple[int, bytes] = (404, b'{"error": "not found"}')
    puts: list[str] = []

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.puts.append(self.path)
        self._send(200, json.dumps({"etag": "e", "result": "created"}).encode())

    def do_GET(self) -> None:
        self._send(*self.other)

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def cic_only() -> Iterator[tuple[str, type[_CicProtocolOnly]]]:
    handler = type("CicOnly", (_CicProtocolOnly,), {"puts": []})
    with http_server(handler) as url:
        yield url, handler


@pytest.mark.parametrize("other", [(404, b'{"error": "not found"}'), (200, b"<html>hi</html>"),
                                   (500, b"boom"), (200, b'{"max_documents": "many"}')])
def test_a_server_without_batches_gets_one_put_per_document(
        cic_only: tuple[str, type[_CicProtocolOnly]], other: tuple[int, bytes]) -> None:
    url, handler = cic_only
    handler.other = other
    items = [(new_pointer(), {"n": i}) for i in range(7)]
    with MetaClient(url, "t", batch=100, retries=1, backoff=0.001) as client:
        assert client.batch_size() == 0
        assert [r.result for r in client.put_many(items, concurrency=3)] == ["created"] * 7
        assert all(isinstance(o, PutResult) for o in client.put_batch(items[:2]))
    assert sorted(handler.puts) == sorted(f"/{p}" for p, _ in items + items[:2])
