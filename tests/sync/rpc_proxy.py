"""A JSON-RPC proxy in front of anvil that behaves like a hosted provider where a test says so.

* ``eth_getLogs`` over more than ``max_log_blocks`` blocks, or returning more than
  ``max_log_results`` logs, is answered with the provider's refusal (``refusal``: code and
  message), as Infura, Alchemy and others refuse wide log queries;
* every ``eth_sendRawTransaction`` is recorded (``sent``: hash -> raw transactions sent);
* ``before_mine`` (set by a test) runs once, just before the next ``evm_mine`` is passed on
  (what it raises is kept in ``errors``).

Everything else is passed through unchanged (single requests and batches). The server runs in a
thread of the test process; :meth:`RpcProxy.stop` ends it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests
from eth_utils import keccak


@dataclass(frozen=True)
class LogQuery:
    first: int
    last: int  # inclusive
    results: int
    refused: bool


class RpcProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.max_log_blocks: int | None = None
        self.max_log_results: int | None = None
        self.refusal = (-32602, "query exceeds the maximum block range")
        self.before_mine: Callable[[], None] | None = None
        self.log_queries: list[LogQuery] = []
        self.sent: dict[str, list[str]] = {}
        self.errors: list[Exception] = []  # raised by before_mine
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 -- http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                reply = json.dumps(proxy._handle(body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # quiet

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="rpc-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def refused_queries(self) -> list[LogQuery]:
        with self._lock:
            return [q for q in self.log_queries if q.refused]

    def answered_queries(self) -> list[LogQuery]:
        with self._lock:
            return [q for q in self.log_queries if not q.refused]

    # -- the proxy ---------------------------------------------------------------------------
    def _handle(self, body: Any) -> Any:
        items = body if isinstance(body, list) else [body]
        for item in items:
            if item.get("method") == "eth_sendRawTransaction":
                raw = str(item["params"][0])
                tx_hash = "0x" + keccak(hexstr=raw).hex().removeprefix("0x")
                with self._lock:
                    self.sent.setdefault(tx_hash, []).append(raw)
            elif item.get("method") == "evm_mine":
                with self._lock:
                    hook, self.before_mine = self.before_mine, None
                if hook is not None:
                    try:
                        hook()
                    except Exception as exc:  # kept for the test; the mine goes on
                        self.errors.append(exc)
        answer = requests.post(self.upstream, json=body, timeout=60).json()
        answers = answer if isinstance(answer, list) else [answer]
        by_id = {a.get("id"): a for a in answers if isinstance(a, dict)}
        for item in items:
            if item.get("method") == "eth_getLogs" and item.get("id") in by_id:
                self._limit_logs(item, by_id[item["id"]])
        return answer

    def _limit_logs(self, request: dict[str, Any], answer: dict[str, Any]) -> None:
        query = request["params"][0]
        first, last = int(query["fromBlock"], 16), int(query["toBlock"], 16)
        results = len(answer.get("result") or [])
        refused = ((self.max_log_blocks is not None and last - first + 1 > self.max_log_blocks)
                   or (self.max_log_results is not None and results > self.max_log_results))
        with self._lock:
            self.log_queries.append(LogQuery(first, last, results, refused))
        if refused:
            code, message = self.refusal
            answer.pop("result", None)
            answer["error"] = {"code": code, "message": message}
