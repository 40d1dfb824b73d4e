"""Small helpers shared by tests (no fixtures here; see conftest.py)."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, by relative path."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``cic-seed ARGS`` in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "cic_seeding.cli.main", *args], cwd=cwd,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


def run_script(script: str, *args: str, cwd: Path | None = None,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=300)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on (it was free a moment ago)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def the_error_line(stderr: str) -> str:
    """The one ``error: ...`` line a failed command printed (no traceback, no second one)."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


@contextlib.contextmanager
def http_server(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """A threading HTTP server of ``handler`` on a free 127.0.0.1 port, its URL, stopped and
    joined on leaving."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class GateProxy:
    """An HTTP forwarder in front of ``upstream`` that passes the first ``let_through`` requests
    of ``method`` on and holds every later one until :meth:`open` (``holding`` is set once one
    waits). A test uses it to stop a server at a known point of a client's run: the client is
    held, the server stopped, the gate opened. A request the upstream does not answer (it is
    down) has its connection closed without an answer, as the server's own would be."""

    def __init__(self, upstream: str, let_through: int, method: str = "PUT") -> None:
        self.upstream, self.let_through, self.method = upstream.rstrip("/"), let_through, method
        self.holding, self._open = threading.Event(), threading.Event()
        self.passed = 0
        self._lock = threading.Lock()

    def open(self) -> None:
        self._open.set()

    def _wait_turn(self, method: str) -> None:
        if method != self.method:
            return
        with self._lock:
            self.passed += 1
            if self.passed <= self.let_through:
                return
        self.holding.set()
        self._open.wait()

    def handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        import requests

        gate = self

        class Forward(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                gate._wait_turn(self.command)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length", "connection")}
                try:
                    answer = requests.request(self.command, gate.upstream + self.path,
                                              data=body, headers=headers, timeout=30)
                except requests.RequestException:
                    self.close_connection = True
                    self.connection.shutdown(2)  # no answer: what a stopped server gives
                    return
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in ("content-length", "connection", "transfer-encoding",
                                           "content-encoding"):
                        self.send_header(key, value)
                self.send_header("content-length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_PUT = do_POST = do_HEAD = _any

            def log_message(self, *args: object) -> None:
                pass

        return Forward


@contextlib.contextmanager
def gate_proxy(upstream: str, let_through: int, method: str = "PUT"
               ) -> Iterator[tuple[GateProxy, str]]:
    """A :class:`GateProxy` before ``upstream`` and its URL; the gate opens on leaving."""
    gate = GateProxy(upstream, let_through, method)
    try:
        with http_server(gate.handler()) as url:
            yield gate, url
    finally:
        gate.open()
