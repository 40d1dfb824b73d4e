"""JSON-RPC over HTTP: single calls and JSON-array batches, retrying transient failures only.

Transient (retried with exponential backoff, then :class:`RpcUnavailableError`): connection
refused or reset, an answer cut off, timeouts, HTTP 5xx and 429, and JSON-RPC "limit exceeded"
answers. Anything else is terminal: an HTTP 4xx, a body that is not JSON-RPC, or the node's
error for one request (:class:`RpcError`, carrying the node's code and message).

Retries and the circuit breaker are :class:`~cic_seeding.remote.Remote`'s: the breaker counts
calls that failed even after their retries; once it opens, calls fail at once with one line
saying so (no request sent).
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Sequence
from typing import Any

import requests

from cic_seeding.errors import RpcError, RpcUnavailableError
from cic_seeding.remote import RPC_NODE, AttemptFailed, BreakerPolicy, Remote, RetryPolicy

Request = tuple[str, Sequence[Any]]

_TRANSIENT_CODES = {-32005, 429}  # limit exceeded / rate limited, as some providers answer
# -32005 also answers a log query whose result set is too large ("query returned more than
# 10000 results"): that is the caller's to split, not a rate limit to wait out.
_TOO_MANY_RESULTS = re.compile(r"query returned more than|block range|range is too large|"
                               r"response size", re.IGNORECASE)


class NodeError(RpcError):
    """The node's error answer to one request (``code``, ``message``, ``data``)."""

    def __init__(self, method: str, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{method}: {message} (code {code})")
        self.method = method
        self.code = code
        self.node_message = message
        self.data = data


class JsonRpc:
    """A JSON-RPC endpoint. Thread-safe (one HTTP session per thread, one breaker)."""

    def __init__(self, url: str, *, timeout: float = 30.0, retries: int = 5,
                 backoff: float = 0.2, cap: float = 8.0,
                 stop: threading.Event | None = None,
                 breaker: BreakerPolicy | None = None) -> None:
        self.url = url
        self.timeout = timeout
        self.remote = Remote(RPC_NODE, url, RetryPolicy(retries, backoff, cap, stop), breaker)
        self.breaker = self.remote.breaker
        self._ids = itertools.count(1)
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"JsonRpc({self.url!r})"

    @property
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        """The result of one request; NodeError if the node answers with an error."""
        answer = self._post({"jsonrpc": "2.0", "id": next(self._ids), "method": method,
                             "params": list(params)}, method)
        if not isinstance(answer, dict):
            raise RpcError(f"{self.url} answered {method} with something that is not JSON-RPC")
        return self._result(method, answer)

    def batch(self, requests_: Sequence[Request], *, chunk: int = 500) -> list[Any]:
        """Results in request order; a failed request's slot holds its :class:`NodeError`."""
        out: list[Any] = []
        for i in range(0, len(requests_), chunk):
            out.extend(self._batch(requests_[i:i + chunk]))
        return out

    def _batch(self, requests_: Sequence[Request]) -> list[Any]:
        if not requests_:
            return []
        first = next(self._ids)
        self._ids = itertools.count(first + len(requests_))
        body = [{"jsonrpc": "2.0", "id": first + n, "method": m, "params": list(p)}
                for n, (m, p) in enumerate(requests_)]
        answer = self._post(body, f"batch of {len(body)} ({requests_[0][0]} ...)")
        if isinstance(answer, dict):  # some nodes answer a whole batch with one error
            raise RpcError(f"{self.url} refused a batch of {len(body)}: "
                           f"{answer.get('error', answer)}")
        by_id = {a.get("id"): a for a in answer if isinstance(a, dict)}
        results: list[Any] = []
        for n, (method, _) in enumerate(requests_):
            item = by_id.get(first + n)
            if item is None:
                results.append(RpcError(f"{method}: no answer in the batch"))
                continue
            try:
                results.append(self._result(method, item))
            except NodeError as exc:
                results.append(exc)
        return results

    @staticmethod
    def _result(method: str, answer: dict[str, Any]) -> Any:
        error = answer.get("error")
        if error is not None:
            if isinstance(error, dict):
                raise NodeError(method, int(error.get("code", 0)), str(error.get("message")),
                                error.get("data"))
            raise NodeError(method, 0, str(error))
        return answer.get("result")

    def _post(self, body: Any, what: str) -> Any:
        return self.remote.call(lambda: self._post_once(body, what))

    def _post_once(self, body: Any, what: str) -> Any:
        try:
            response = self._session.post(self.url, json=body, timeout=self.timeout)
        except requests.Timeout:
            raise _unavailable(f"RPC {self.url} timed out on {what}", "timed out") from None
        except requests.ConnectionError as exc:
            reason = "connection refused" if "refused" in str(exc).lower() else "connection failed"
            raise _unavailable(f"RPC {self.url} does not answer ({reason})", reason) from None
        except requests.exceptions.ChunkedEncodingError:  # the node went away mid-answer
            raise _unavailable(f"RPC {self.url} broke off its answer to {what}",
                               "answer cut off") from None
        except requests.RequestException as exc:
            raise RpcError(f"RPC {self.url}: {exc}") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise _unavailable(f"RPC {self.url} answered HTTP {response.status_code} on {what}",
                               f"HTTP {response.status_code}")
        if response.status_code >= 400:
            raise RpcError(f"RPC {self.url} answered HTTP {response.status_code} on {what}: "
                           f"{response.text[:200]}")
        try:
            answer = response.json()
        except ValueError:
            raise RpcError(f"RPC {self.url} answered {what} with something that is not JSON "
                           f"({response.text[:80]!r})") from None
        if isinstance(answer, dict) and isinstance(answer.get("error"), dict) and \
                answer["error"].get("code") in _TRANSIENT_CODES and \
                not _TOO_MANY_RESULTS.search(str(answer["error"].get("message", ""))):
            message = answer["error"].get("message")
            raise _unavailable(f"RPC {self.url} is rate limiting: {message}",
                               f"rate limited: {message}")
        return answer


def _unavailable(message: str, reason: str) -> AttemptFailed:
    """A transient failure of one attempt; ``reason`` is its short form for the breaker."""
    return AttemptFailed(RpcUnavailableError(message), reason)
