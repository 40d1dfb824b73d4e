"""The metadata server's ASGI app: JSON documents under 64-hex-character pointers.

``GET /<pointer>`` is open; ``PUT`` (create or replace) and ``POST`` (create) need
``Authorization: Bearer <token>``. Every error is ``{"error": "..."}`` with its status.

Two extensions of the CIC metadata protocol, which clients discover and real CIC metadata
servers lack (a client falls back to one PUT per document there):

* ``GET /_batch`` describes, and ``PUT /_batch`` takes, many documents in one request:
  ``{"documents": [{"pointer": P, "document": D}, ...]}``, each stored as ``PUT /P`` would store
  it, all in one database transaction. The answer (200) holds one result per document, in
  order: ``{"pointer", "status": 201 | 200, "result", "etag", "version"}``, or ``{"pointer",
  "status": 400 | 413, "error"}`` for a document refused as its own PUT would be (the others
  are stored). A request refused as a whole (token, content type, size, not JSON, not that
  shape) gets its status and ``{"error"}``, and nothing of it is stored.
* ``GET /_stats``: what the server stored since it started (documents by result, write
  requests, and ``active_seconds``: the time at least one write was being handled), so a
  benchmark can put the server's own rate beside its client's.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cic_devnet.meta.storage import CONFLICT, CREATED, UNCHANGED, UPDATED, Storage
from cic_seeding.records import jsonsafe

MAX_BODY = 64 * 1024
#: Documents and bytes one ``PUT /_batch`` may hold (each document also within MAX_BODY).
MAX_BATCH_DOCUMENTS = 1000
MAX_BATCH_BODY = 8 * 1024 * 1024
#: Nesting the batch envelope adds around a document (object, list, object).
_ENVELOPE_DEPTH = 3
POINTER = re.compile(r"[0-9a-f]{64}")
JSON_TYPE = "application/json"


class _Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def canonical(doc: Any) -> str:
    """The one text of a JSON value: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def etag_of(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _quoted(etag: str) -> str:
    return f'"{etag}"'


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _pointer(request: Request) -> str:
    return _checked_pointer(request.path_params["pointer"])


def _checked_pointer(pointer: str) -> str:
    if not POINTER.fullmatch(pointer):
        raise _Refused(400, f"bad pointer {pointer[:80]!r}: expected 64 lowercase hex characters "
                            "(sha256 of identifier and salt)")
    return str(pointer)


def _stored_text(doc: Any) -> tuple[str, bytes]:
    """The canonical text of ``doc`` and its UTF-8 bytes; 400 if it cannot be UTF-8."""
    text = canonical(doc)
    try:
        return text, text.encode("utf-8")
    except UnicodeEncodeError:
        raise _Refused(400, "body is not valid JSON: it holds an unpaired surrogate "
                            "(\\ud800-\\udfff)") from None


class WriteStats:
    """What the server stored since it started, and for how long it was writing.

    ``active_seconds`` grows while at least one write request is being handled (from its
    body's first byte to its answer), so documents / active_seconds is the rate the server
    stored at while it had work, whatever the client did between requests.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.documents = {CREATED: 0, UPDATED: 0, UNCHANGED: 0}
        self.requests = 0
        self.active = 0.0
        self._busy = 0
        self._since = 0.0

    def begin(self) -> None:
        if self._busy == 0:
            self._since = self.clock()
        self._busy += 1

    def end(self, outcomes: list[str]) -> None:
        self._busy -= 1
        if self._busy == 0:
            self.active += self.clock() - self._since
        self.requests += 1
        for outcome in outcomes:
            if outcome in self.documents:
                self.documents[outcome] += 1

    def to_dict(self) -> dict[str, Any]:
        active = self.active + (self.clock() - self._since if self._busy else 0.0)
        return {"documents": sum(self.documents.values()), **self.documents,
                "write_requests": self.requests, "active_seconds": round(active, 6)}


def _matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    tags = (t.strip() for t in header.split(","))
    return any((t[2:] if t.startswith("W/") else t) == _quoted(etag) for t in tags)


class MetaApp:
    """Handlers bound to one storage and one write token."""

    def __init__(self, storage: Storage, token: str, max_body: int = MAX_BODY,
                 max_batch_documents: int = MAX_BATCH_DOCUMENTS,
                 max_batch_body: int = MAX_BATCH_BODY) -> None:
        if not token:
            raise ValueError("the metadata server needs a non-empty write token")
        self.storage = storage
        self._token = token.encode("utf-8")
        self.max_body = max_body
        self.max_batch_documents = max_batch_documents
        self.max_batch_body = max_batch_body
        self.stats = WriteStats()

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def stats_of(self, request: Request) -> Response:
        return JSONResponse(self.stats.to_dict())

    async def batch_limits(self, request: Request) -> Response:
        return JSONResponse({"max_documents": self.max_batch_documents,
                             "max_bytes": self.max_batch_body,
                             "max_document_bytes": self.max_body})

    async def put_batch(self, request: Request) -> Response:
        self._authorise(request)
        self.stats.begin()
        outcomes: list[str] = []
        try:
            raw = await self._body(request, self.max_batch_body)
            results, outcomes = await run_in_threadpool(self._store_batch, raw)
        finally:
            self.stats.end(outcomes)
        return JSONResponse({"results": results})

    def _store_batch(self, raw: bytes) -> tuple[list[dict[str, Any]], list[str]]:
        """Check every document as its own PUT would be checked, store those that pass in one
        transaction; (one result per document in order, the outcomes stored)."""
        body = self._parse(raw, jsonsafe.MAX_DEPTH + _ENVELOPE_DEPTH)
        items = body.get("documents") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            raise _Refused(400, 'expected {"documents": [{"pointer": P, "document": D}, ...]} '
                                "with at least one document")
        if len(items) > self.max_batch_documents:
            raise _Refused(413, f"{len(items)} documents exceed the limit of "
                                f"{self.max_batch_documents} per batch")
        results: list[dict[str, Any]] = []
        ready: list[tuple[int, str, str, str]] = []  # (index in results, pointer, text, etag)
        for item in items:
            pointer = item.get("pointer") if isinstance(item, dict) else None
            try:
                if not isinstance(item, dict) or not isinstance(pointer, str) \
                        or "document" not in item:
                    raise _Refused(400, 'each entry must be {"pointer": P, "document": D}')
                pointer = _checked_pointer(pointer)
                text, data = _stored_text(item["document"])
                if len(data) > self.max_body:
                    raise _Refused(413, f"document of {len(data)} bytes exceeds the limit of "
                                        f"{self.max_body}")
            except _Refused as exc:
                results.append({"pointer": pointer if isinstance(pointer, str) else None,
                                "status": exc.status, "error": exc.message})
                continue
            ready.append((len(results), pointer, text, hashlib.sha256(data).hexdigest()))
            results.append({})
        stored = self.storage.put_many([(p, text, etag) for _, p, text, etag in ready])
        for (index, pointer, _, etag), (outcome, version) in zip(ready, stored, strict=True):
            results[index] = {"pointer": pointer, "status": 201 if outcome == CREATED else 200,
                              "result": outcome, "etag": etag, "version": version}
        return results, [outcome for outcome, _ in stored]

    async def get(self, request: Request) -> Response:
        pointer = _pointer(request)
        stored = await run_in_threadpool(self.storage.get, pointer)
        if stored is None:
            return _error(404, f"no document under pointer {pointer}")
        headers = {"ETag": _quoted(stored.etag)}
        inm = request.headers.get("if-none-match")
        if inm is not None and _matches(inm, stored.etag):
            return Response(status_code=304, headers=headers)
        return Response(stored.body.encode("utf-8"), media_type=JSON_TYPE, headers=headers)

    async def put(self, request: Request) -> Response:
        return await self._write(request, create_only=False)

    async def post(self, request: Request) -> Response:
        return await self._write(request, create_only=True)

    async def _write(self, request: Request, *, create_only: bool) -> Response:
        pointer = _pointer(request)
        self._authorise(request)
        self.stats.begin()
        outcomes: list[str] = []
        try:
            doc = await self._json_body(request)
            text, data = _stored_text(doc)
            etag = hashlib.sha256(data).hexdigest()
            outcome, version = await run_in_threadpool(
                self.storage.put, pointer, text, etag, create_only=create_only)
            outcomes.append(outcome)
        finally:
            self.stats.end(outcomes)
        if outcome == CONFLICT:
            return _error(409, f"pointer {pointer} already holds a different document; "
                               "PUT replaces it")
        return JSONResponse({"pointer": pointer, "etag": etag, "result": outcome,
                             "version": version},
                            status_code=201 if outcome == CREATED else 200,
                            headers={"ETag": _quoted(etag)})

    def _authorise(self, request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                                 self._token):
            raise _Refused(401, "writes need a valid 'Authorization: Bearer <token>' header",
                           {"WWW-Authenticate": 'Bearer realm="cic-meta"'})

    async def _json_body(self, request: Request) -> Any:
        return self._parse(await self._body(request, self.max_body), jsonsafe.MAX_DEPTH)

    async def _body(self, request: Request, limit: int) -> bytes:
        """The request's JSON body as bytes: 415 unless it says JSON, 413 past ``limit``."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != JSON_TYPE and not ctype.endswith("+json"):
            raise _Refused(415, f"content type {ctype or '(none)'!r} is not supported; "
                                f"send {JSON_TYPE}")
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise _Refused(413, f"body of {length} bytes exceeds the limit of {limit}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _Refused(413, f"body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _parse(raw: bytes, max_depth: int) -> Any:
        try:
            doc = jsonsafe.loads(raw.decode("utf-8"), max_depth, parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError) as exc:
            raise _Refused(400, f"body is not valid JSON: {exc}") from None
        except RecursionError:
            raise _Refused(400, "body is not valid JSON: it nests too deeply") from None
        return doc


def _no_constant(name: str) -> Any:
    """NaN and Infinity: Python's json reads them, JSON does not have them."""
    raise ValueError(f"{name} is not a JSON value")


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, _Refused)
    return _error(exc.status, exc.message, exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, str(exc.detail), dict(exc.headers or {}))


async def _server_error(request: Request, exc: Exception) -> Response:
    return _error(500, f"internal error: {type(exc).__name__}")


def create_app(storage: Storage, token: str, *, max_body: int = MAX_BODY) -> Starlette:
    """The ASGI app serving ``storage``; writes need ``token``."""
    handlers = MetaApp(storage, token, max_body)
    routes = [
        Route("/_health", handlers.health, methods=["GET"]),
        Route("/_stats", handlers.stats_of, methods=["GET"]),
        Route("/_batch", handlers.batch_limits, methods=["GET"]),
        Route("/_batch", handlers.put_batch, methods=["PUT"]),
        Route("/{pointer}", handlers.get, methods=["GET"]),
        Route("/{pointer}", handlers.put, methods=["PUT"]),
        Route("/{pointer}", handlers.post, methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={
        _Refused: _refused, HTTPException: _http_error, Exception: _server_error})
