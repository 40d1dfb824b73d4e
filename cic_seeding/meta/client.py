"""HTTP client of a CIC metadata server: read, write, and write many with bounded concurrency.

Transient failures (connection refused, an answer cut off, timeout, 5xx, 429) are retried with
exponential backoff and jitter; when the budget is spent a :class:`MetadataUnavailableError`
names the URL. A 4xx answer is terminal: :class:`MetadataRequestError` carries the server's
message. Retries and the circuit breaker are :class:`~cic_seeding.remote.Remote`'s; the
breaker, shared by the client's threads, counts writes and reads that failed even after their
retries; once it opens, calls fail at once saying so.

Writing many documents (:meth:`MetaClient.put_batch`, :meth:`MetaClient.put_many`) uses the
batch extension of the devnet's server (``PUT /_batch``, many documents in one request and one
database transaction) when the client is allowed to (``batch``) and the server offers it; the
client asks once (``GET /_batch``). A server without it -- a real CIC metadata server -- gets
one ``PUT /<pointer>`` per document, the CIC protocol, and every document is stored the same
either way.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase

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
BATCH_PATH = "_batch"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PutResult:
    """What one write did: ``result`` is ``created``, ``updated`` or ``unchanged``."""

    pointer: str
    etag: str
    result: str


#: What a batch write gives per document: its result, or the refusal of that document alone.
BatchOutcome = PutResult | MetadataRequestError


@dataclass(frozen=True)
class BatchLimits:
    """What one ``PUT /_batch`` of the server may hold (``GET /_batch``)."""

    documents: int
    bytes: int


class _WriteToken(AuthBase):
    """``Authorization: Bearer`` on writes only. Being the session's auth, it also spares each
    request requests' search of ~/.netrc for credentials (a file lookup per request)."""

    def __init__(self, token: str | None) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.token and request.method not in ("GET", "HEAD"):
            request.headers["Authorization"] = f"Bearer {self.token}"
        return request


class MetaClient:
    """A metadata server at ``url``; writes send ``token`` as a bearer token.

    Thread-safe: :meth:`put_many` shares one connection pool (kept-alive connections, up to
    ``pool_size``) between its workers. ``on_retry(url, error, attempt, delay)`` is called
    before each retry sleep. ``batch``: at most this many documents per batch request when the
    server offers them (0, the default: one PUT per document, whatever the server offers).
    """

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 10.0,
                 retries: int = 5, backoff: float = 0.1, max_backoff: float = 5.0,
                 pool_size: int = 32, on_retry: RetryHook | None = None,
                 breaker: BreakerPolicy | None = None, batch: int = 0) -> None:
        self.url = url.rstrip("/")
        self.remote = Remote(METADATA_SERVER, self.url,
                             RetryPolicy(retries, backoff, max_backoff, log_level=logging.INFO),
                             breaker)
        self.breaker = self.remote.breaker
        self.timeout = timeout
        self.on_retry = on_retry
        self.batch = max(0, batch)
        self._token = token
        self._limits: BatchLimits | None = None  # None: not asked yet (or it did not answer)
        self._limits_lock = threading.Lock()
        self._session = requests.Session()
        self._session.auth = _WriteToken(token)
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
        body = _dumps(doc)
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
        """Write every ``(pointer, doc)``, at most ``concurrency`` requests in flight (batch
        requests of up to :meth:`batch_size` documents when the server takes them).

        Returns the results in input order. On the first failure (after its retries) no new
        writes start, those in flight finish, and that error is raised. ``on_done`` is called
        (from worker threads) after each successful write.
        """
        results: dict[int, PutResult] = {}
        size = self.batch_size()
        if size:
            def chunk(index: int, part: list[tuple[int, tuple[str, Document]]]) -> None:
                outcomes = self.put_batch([item for _, item in part])
                for (i, _), outcome in zip(part, outcomes, strict=True):
                    if isinstance(outcome, MetadataRequestError):
                        raise outcome
                    results[i] = outcome
                    if on_done is not None:
                        on_done(outcome)

            self._fan_out(chunk, _chunks(enumerate(items), size), concurrency)
            return [results[i] for i in sorted(results)]

        def one(index: int, item: tuple[str, Document]) -> None:
            result = self.put(*item)
            results[index] = result  # distinct keys: no lock needed
            if on_done is not None:
                on_done(result)

        self._fan_out(one, items, concurrency)
        return [results[i] for i in sorted(results)]

    def batch_size(self) -> int:
        """Documents per batch request from now on: 0 when not batching (``batch`` is 0, or
        the server has no batch endpoint). The server is asked once; a server that does not
        answer is asked again next time (meanwhile: one PUT per document)."""
        if not self.batch:
            return 0
        limits = self._batch_limits()
        return 0 if limits is None else min(self.batch, limits.documents)

    def put_batch(self, items: Sequence[tuple[str, Document]]) -> list[BatchOutcome]:
        """Write ``items`` in batch requests when the server offers them (else, or for a
        batch it refuses whole as unreadable, one PUT each); one outcome per item, in order:
        its :class:`PutResult`, or the :class:`MetadataRequestError` refusing that document.

        Raises what concerns every document: :class:`MetadataUnavailableError` once a
        request's retries are spent, a fatal :class:`MetadataRequestError` (a wrong token, not
        a metadata server).
        """
        limits = self._batch_limits() if self.batch else None
        if limits is None:
            return [self._put_or_refusal(p, d) for p, d in items]
        outcomes: list[BatchOutcome] = []
        for part in _by_size([(pointer, doc, _dumps(doc)) for pointer, doc in items],
                             min(self.batch, limits.documents), limits.bytes):
            outcomes += self._send_batch(part)
        return outcomes

    def _put_or_refusal(self, pointer: str, doc: Document) -> BatchOutcome:
        try:
            return self.put(pointer, doc)
        except MetadataRequestError as exc:
            if exc.fatal:
                raise
            return exc

    def _send_batch(self, part: list[tuple[str, Document, str]]) -> list[BatchOutcome]:
        """One ``PUT /_batch`` of ``(pointer, document, its text)``: one outcome each."""
        body = '{"documents":[' + ",".join(
            f'{{"pointer":{json.dumps(pointer)},"document":{text}}}' for pointer, _, text in part
        ) + "]}"
        try:
            response = self._request("PUT", BATCH_PATH, body.encode("utf-8"))
        except MetadataRequestError as exc:
            if exc.fatal:
                raise
            # refused whole (unreadable, too large, gone): each document as its own PUT, so
            # each gets its own answer and a bad one costs itself alone
            if exc.status in (404, 405):
                with self._limits_lock:
                    self._limits = BatchLimits(0, 0)
            log.info("metadata batch of %d documents refused (%s); writing them one by one",
                     len(part), exc)
            return [self._put_or_refusal(pointer, doc) for pointer, doc, _ in part]
        data = self._json("PUT", BATCH_PATH, response)
        answers = data.get("results") if isinstance(data, dict) else None
        if not isinstance(answers, list) or len(answers) != len(part) \
                or not all(isinstance(a, dict) for a in answers):
            raise self._not_ours("PUT", BATCH_PATH, response,
                                 f"no list of {len(part)} results")
        return [self._outcome(pointer, answer)
                for (pointer, _, _), answer in zip(part, answers, strict=True)]

    def _outcome(self, pointer: str, answer: dict[str, Any]) -> BatchOutcome:
        status = answer.get("status")
        if status in (200, 201):
            return PutResult(pointer, str(answer.get("etag", "")), str(answer.get("result", "")))
        code = status if isinstance(status, int) else 400
        return MetadataRequestError(
            f"PUT {self.url}/{pointer} was refused with {code}: {answer.get('error', '')}",
            status=code, hint=_HINTS.get(code))

    def _batch_limits(self) -> BatchLimits | None:
        """The server's batch limits (documents 0: it has none), or None when it did not
        answer. One request, outside the retries and the breaker: a server that answers
        anything but its limits simply has no batch endpoint."""
        with self._limits_lock:
            known = self._limits
        if known is not None:
            return known if known.documents > 0 else None
        try:
            response = self._session.get(f"{self.url}/{BATCH_PATH}", timeout=self.timeout)
        except requests.RequestException as exc:
            log.debug("metadata server %s: no answer about batches (%s)", self.url, _short(exc))
            return None
        limits = BatchLimits(0, 0)
        try:
            data = response.json() if response.status_code == 200 else None
        except ValueError:
            data = None
        if isinstance(data, dict):
            documents, size = data.get("max_documents"), data.get("max_bytes")
            if isinstance(documents, int) and isinstance(size, int) and documents > 0 \
                    and size > 0:
                limits = BatchLimits(documents, size)
        log.info("metadata server %s: %s", self.url,
                 f"batch writes of up to {limits.documents} documents" if limits.documents
                 else "no batch writes, one PUT per document")
        with self._limits_lock:
            self._limits = limits
        return limits if limits.documents else None

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
        headers = {} if body is None else {"Content-Type": "application/json"}

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


def _dumps(doc: Document) -> str:
    """The text a document is sent as (the server stores its canonical form)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    part: list[Any] = []
    for item in items:
        part.append(item)
        if len(part) == size:
            yield part
            part = []
    if part:
        yield part


def _by_size(items: list[tuple[str, Document, str]], documents: int,
             limit: int) -> Iterator[list[tuple[str, Document, str]]]:
    """``(pointer, document, text)`` cut into runs of at most ``documents`` whose batch body
    stays under ``limit`` bytes (a document too large for any batch goes alone: the server
    refuses it, that document alone)."""
    part: list[tuple[str, Document, str]] = []
    size = 16  # the envelope
    for item in items:
        cost = len(item[2].encode("utf-8")) + len(item[0]) + 28
        if part and (len(part) == documents or size + cost > limit):
            yield part
            part, size = [], 16
        part.append(item)
        size += cost
    if part:
        yield part


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


_HINTS = {401: "set CIC_META_TOKEN (or meta_token_file) to the server's write token",
          413: "the document is larger than the server accepts"}


def _refused(method: str, url: str, response: requests.Response) -> MetadataRequestError:
    status = response.status_code
    return MetadataRequestError(f"{method} {url} was refused with {status}: {_message(response)}",
                                status=status, hint=_HINTS.get(status))
