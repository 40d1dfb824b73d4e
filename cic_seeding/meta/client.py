"""HTTP client of a CIC metadata server: read, write, and write many with bounded concurrency.

Transient failures (connection refused, an answer cut off, timeout, 5xx, 429) are retried with
exponential backoff and jitter; when the budget is spent a :class:`MetadataUnavailableError`
names the URL. A 4xx answer is terminal: :class:`MetadataRequestError` carries the server's
message. Retries and the circuit breaker are :class:`~cic_seeding.remote.Remote`'s; the
breaker, shared by the client's threads, counts writes and reads that failed even after their
retries; once it opens, calls fail at once saying so.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from cic_seeding.errors import MetadataRequestError, MetadataUnavailableError
from cic_seeding.remote import (
    METADATA_SERVER,
    AttemptFailed,
    BreakerPolicy,
    Remote,
    RetryPolicy,
)

Document = dict[str, Any] | list[Any] | str | int | float | bool
RetryHook = Callable[[str, Exception, int, float], None]
_TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class PutResult:
    """What one write did: ``result`` is ``created``, ``updated`` or ``unchanged``."""

    pointer: str
    etag: str
    result: str


class MetaClient:
    """A metadata server at ``url``; writes send ``token`` as a bearer token.

    Thread-safe: :meth:`put_many` shares one connection pool between its workers.
    ``on_retry(url, error, attempt, delay)`` is called before each retry sleep.
    """

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 10.0,
                 retries: int = 5, backoff: float = 0.1, max_backoff: float = 5.0,
                 pool_size: int = 32, on_retry: RetryHook | None = None,
                 breaker: BreakerPolicy | None = None) -> None:
        self.url = url.rstrip("/")
        self.remote = Remote(METADATA_SERVER, self.url,
                             RetryPolicy(retries, backoff, max_backoff, log_level=logging.INFO),
                             breaker)
        self.breaker = self.remote.breaker
        self.timeout = timeout
        self.on_retry = on_retry
        self._token = token
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["Accept"] = "application/json"

    def __enter__(self) -> MetaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    def get(self, pointer: str) -> Document | None:
        """The document under ``pointer``, or None when there is none (404)."""
        response = self._request("GET", pointer)
        if response.status_code == 404:
            return None
        return self._json("GET", pointer, response)

    def put(self, pointer: str, doc: Document) -> PutResult:
        """Create or replace the document under ``pointer``; the same document is a no-op."""
        body = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        response = self._request("PUT", pointer, body.encode("utf-8"))
        data = self._json("PUT", pointer, response)
        if not isinstance(data, dict):
            raise self._not_ours("PUT", pointer, response, "a body that is not a JSON object")
        return PutResult(pointer, str(data.get("etag", "")), str(data.get("result", "")))

    def _json(self, method: str, pointer: str, response: requests.Response) -> Document:
        try:
            document: Document = response.json()
            return document
        except ValueError:
            raise self._not_ours(method, pointer, response, "a body that is not JSON") from None

    def _not_ours(self, method: str, pointer: str, response: requests.Response,
                  what: str) -> MetadataRequestError:
        return MetadataRequestError(
            f"metadata server {self.url} answered {method} /{pointer} with "
            f"{response.status_code} and {what}: {response.text[:80]!r}",
            status=response.status_code, fatal=True,
            hint="is CIC_META_URL a CIC metadata server?")

    def put_many(self, items: Iterable[tuple[str, Document]], *, concurrency: int = 16,
                 on_done: Callable[[PutResult], None] | None = None) -> list[PutResult]:
        """Write every ``(pointer, doc)``, at most ``concurrency`` requests in flight.

        Returns the results in input order. On the first failure (after its retries) no new
        writes start, those in flight finish, and that error is raised. ``on_done`` is called
        (from worker threads) after each successful write.
        """
        results: dict[int, PutResult] = {}

        def one(index: int, item: tuple[str, Document]) -> None:
            result = self.put(*item)
            results[index] = result  # distinct keys: no lock needed
            if on_done is not None:
                on_done(result)

        self._fan_out(one, items, concurrency)
        return [results[i] for i in sorted(results)]

    def get_many(self, pointers: Iterable[str], *,
                 concurrency: int = 16) -> dict[str, Document | None]:
        """The document (or None) under each pointer, at most ``concurrency`` reads in flight."""
        found: dict[str, Document | None] = {}

        def one(index: int, pointer: str) -> None:
            found[pointer] = self.get(pointer)

        self._fan_out(one, pointers, concurrency)
        return found

    @staticmethod
    def _fan_out(fn: Callable[[int, Any], None], items: Iterable[Any], concurrency: int) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="meta") as pool:
            _run_bounded(pool, fn, items, 2 * concurrency)

    def _request(self, method: str, pointer: str, body: bytes | None = None) -> requests.Response:
        url = f"{self.url}/{pointer}"
        headers = {}
        if body is not None:
            headers["Content-Type"] = "application/json"
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"

        def attempt() -> requests.Response:
            try:
                response = self._session.request(method, url, data=body, headers=headers,
                                                 timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout,
                    requests.exceptions.ChunkedEncodingError) as exc:  # or cut off mid-answer
                reason = _short(exc)
                raise AttemptFailed(MetadataUnavailableError(
                    f"metadata server {self.url} does not answer {method} /{pointer} "
                    f"({reason})"), reason) from exc
            status = response.status_code
            if status in _TRANSIENT_STATUS:
                raise AttemptFailed(MetadataUnavailableError(
                    f"{method} {url} answered {status}: {_message(response)}"),
                    retry_after=_retry_after(response))
            if status < 400 or (status == 404 and method == "GET"):
                return response
            raise _refused(method, url, response)

        on_retry = self.on_retry
        return self.remote.call(attempt, on_retry=None if on_retry is None else (
            lambda error, retry, delay: on_retry(url, error, retry, delay)))


def _run_bounded(pool: ThreadPoolExecutor, fn: Callable[[int, Any], None], items: Iterable[Any],
                 window: int) -> None:
    """Run ``fn(index, item)`` for every item keeping at most ``window`` pending; after the
    first failure start nothing new, let those in flight finish, and re-raise it."""
    pending: set[Future[None]] = set()
    failure: BaseException | None = None
    iterator = enumerate(items)
    drained = False
    while True:
        while not drained and failure is None and len(pending) < window:
            try:
                index, item = next(iterator)
            except StopIteration:
                drained = True
                break
            pending.add(pool.submit(fn, index, item))
        if not pending:
            break
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            exc = future.exception()
            if exc is not None and failure is None:
                failure = exc
    if failure is not None:
        raise failure


def _message(response: requests.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200] or response.reason
    if isinstance(data, dict) and "error" in data:
        return str(data["error"])
    return str(data)[:200]


def _short(error: Exception) -> str:
    if isinstance(error, requests.ConnectionError):
        return "connection refused or reset"
    if isinstance(error, requests.Timeout):
        return "timed out"
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        return "answer cut off"
    return str(error)


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return float(value)
    except ValueError:
        return None


def _refused(method: str, url: str, response: requests.Response) -> MetadataRequestError:
    status = response.status_code
    hints = {401: "set CIC_META_TOKEN (or meta_token_file) to the server's write token",
             413: "the document is larger than the server accepts"}
    return MetadataRequestError(f"{method} {url} was refused with {status}: {_message(response)}",
                                status=status, hint=hints.get(status))
