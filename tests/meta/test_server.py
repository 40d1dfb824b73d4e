"""The metadata server over HTTP, as any client sees it (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid

import pytest
import requests

from cic_devnet.meta.app import canonical, etag_of
from cic_devnet.meta.process import MetaServerProcess


def new_pointer() -> str:
    return hashlib.sha256(uuid.uuid4().bytes).hexdigest()


def auth(server: MetaServerProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token}"}


def test_round_trip_object_and_string(meta_server: MetaServerProcess) -> None:
    p, q = new_pointer(), new_pointer()
    doc = {"vcard": "QkVHSU4=", "identities": {"evm": {}}, "name": "Wanjikũ"}
    r = requests.put(f"{meta_server.url}/{p}", json=doc, headers=auth(meta_server))
    assert r.status_code == 201
    assert r.json()["result"] == "created"
    got = requests.get(f"{meta_server.url}/{p}")
    assert got.status_code == 200
    assert got.headers["content-type"] == "application/json"
    assert got.json() == doc
    assert got.headers["etag"] == f'"{etag_of(canonical(doc))}"'
    r = requests.put(f"{meta_server.url}/{q}", json="0xAbC", headers=auth(meta_server))
    assert r.status_code == 201
    assert requests.get(f"{meta_server.url}/{q}").json() == "0xAbC"


def test_repeated_put_is_a_no_op(meta_server: MetaServerProcess) -> None:
    p = new_pointer()
    first = requests.put(f"{meta_server.url}/{p}", json={"b": 1, "a": [1, 2]},
                         headers=auth(meta_server))
    # same document, other key order and spacing: same canonical text, same ETag, no write
    again = requests.put(f"{meta_server.url}/{p}", data='{ "a": [1,2], "b": 1 }',
                         headers={**auth(meta_server), "Content-Type": "application/json"})
    assert again.status_code == 200
    assert again.json()["result"] == "unchanged"
    assert again.json()["version"] == first.json()["version"] == 1
    assert again.headers["etag"] == first.headers["etag"]
    changed = requests.put(f"{meta_server.url}/{p}", json={"b": 2}, headers=auth(meta_server))
    assert (changed.status_code, changed.json()["result"], changed.json()["version"]) == (
        200, "updated", 2)
    assert changed.headers["etag"] != first.headers["etag"]


def test_if_none_match_gives_304(meta_server: MetaServerProcess) -> None:
    p = new_pointer()
    etag = requests.put(f"{meta_server.url}/{p}", json={"x": 1},
                        headers=auth(meta_server)).headers["etag"]
    r = requests.get(f"{meta_server.url}/{p}", headers={"If-None-Match": etag})
    assert r.status_code == 304
    assert r.content == b""
    assert r.headers["etag"] == etag
    r = requests.get(f"{meta_server.url}/{p}", headers={"If-None-Match": '"other"'})
    assert r.status_code == 200


def test_post_creates_but_does_not_replace(meta_server: MetaServerProcess) -> None:
    p = new_pointer()
    url = f"{meta_server.url}/{p}"
    assert requests.post(url, json={"v": 1}, headers=auth(meta_server)).status_code == 201
    assert requests.post(url, json={"v": 1}, headers=auth(meta_server)).status_code == 200
    r = requests.post(url, json={"v": 2}, headers=auth(meta_server))
    assert r.status_code == 409
    assert "PUT replaces" in r.json()["error"]
    assert requests.get(url).json() == {"v": 1}


def test_absent_pointer_is_404_json(meta_server: MetaServerProcess) -> None:
    p = new_pointer()
    r = requests.get(f"{meta_server.url}/{p}")
    assert r.status_code == 404
    assert p in r.json()["error"]


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic Zm9vOmJhcg=="},
    {"Authorization": "Bearer"},
])
def test_anonymous_or_wrong_token_write_refused(meta_server: MetaServerProcess,
                                                headers: dict[str, str]) -> None:
    p = new_pointer()
    for method in ("PUT", "POST"):
        r = requests.request(method, f"{meta_server.url}/{p}", json={"x": 1}, headers=headers)
        assert r.status_code == 401
        assert "Bearer" in r.json()["error"]
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert requests.get(f"{meta_server.url}/{p}").status_code == 404


@pytest.mark.parametrize("pointer",
                         ["abc", "A" * 64, "g" * 64, "a" * 63, "a" * 65, "0x" + "a" * 62])
def test_bad_pointer_is_400(meta_server: MetaServerProcess, pointer: str) -> None:
    assert requests.get(f"{meta_server.url}/{pointer}").status_code == 400
    r = requests.put(f"{meta_server.url}/{pointer}", json={}, headers=auth(meta_server))
    assert r.status_code == 400
    assert "64 lowercase hex" in r.json()["error"]


def test_oversized_body_is_413(meta_server: MetaServerProcess) -> None:
    p = new_pointer()
    big = json.dumps({"x": "y" * (64 * 1024)})
    r = requests.put(f"{meta_server.url}/{p}", data=big,
                     headers={**auth(meta_server), "Content-Type": "application/json"})
    assert r.status_code == 413
    assert "limit" in r.json()["error"]

    def chunks():  # no Content-Length: the limit holds while streaming too
        for _ in range(70):
            yield b" " * 1024

    r = requests.put(f"{meta_server.url}/{p}", data=chunks(),
                     headers={**auth(meta_server), "Content-Type": "application/json"})
    assert r.status_code == 413
    assert requests.get(f"{meta_server.url}/{p}").status_code == 404


@pytest.mark.parametrize(("body", "ctype", "status"), [
    (b"{not json", "application/json", 400),
    (b"\xff\xfe", "application/json", 400),
    (b"", "application/json", 400),
    (b'{"a": 1}', "text/plain", 415),
    (b'{"a": 1}', None, 415),
])
def test_non_json_refused(meta_server: MetaServerProcess, body: bytes, ctype: str | None,
                          status: int) -> None:
    headers = auth(meta_server)
    if ctype:
        headers["Content-Type"] = ctype
    r = requests.put(f"{meta_server.url}/{new_pointer()}", data=body, headers=headers)
    assert r.status_code == status
    assert r.json()["error"]


def test_unknown_method_and_path_are_json(meta_server: MetaServerProcess) -> None:
    r = requests.delete(f"{meta_server.url}/{new_pointer()}", headers=auth(meta_server))
    assert (r.status_code, r.json()) == (405, {"error": "Method Not Allowed"})
    r = requests.get(f"{meta_server.url}/a/b")
    assert r.status_code == 404
    assert r.json()["error"]


def test_cli_refuses_missing_or_empty_token(tmp_path) -> None:
    cmd = [sys.executable, "-m", "cic_devnet.meta", "--db", str(tmp_path / "m.db")]
    r = subprocess.run([*cmd, "--token-file", str(tmp_path / "none")], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2
    assert "cannot read the token file" in r.stderr
    (tmp_path / "empty").write_text("\n")
    r = subprocess.run([*cmd, "--token-file", str(tmp_path / "empty")], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2
    assert "empty" in r.stderr


def test_token_never_logged(meta_server: MetaServerProcess) -> None:
    requests.put(f"{meta_server.url}/{new_pointer()}", json={}, headers=auth(meta_server))
    assert meta_server.token not in meta_server.log()
