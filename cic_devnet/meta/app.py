"""The metadata server's ASGI app: JSON documents under 64-hex-character pointers.

``GET /<pointer>`` is open; ``PUT`` (create or replace) and ``POST`` (create) need
``Authorization: Bearer <token>``. Every error is ``{"error": "..."}`` with its status.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cic_devnet.meta.storage import CONFLICT, CREATED, Storage
from cic_seeding.records import jsonsafe

MAX_BODY = 64 * 1024
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
    pointer = request.path_params["pointer"]
    if not POINTER.fullmatch(pointer):
        raise _Refused(400, f"bad pointer {pointer[:80]!r}: expected 64 lowercase hex characters "
                            "(sha256 of identifier and salt)")
    return str(pointer)


def _matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    tags = (t.strip() for t in header.split(","))
    return any((t[2:] if t.startswith("W/") else t) == _quoted(etag) for t in tags)


class MetaApp:
    """Handlers bound to one storage and one write token."""

    def __init__(self, storage: Storage, token: str, max_body: int = MAX_BODY) -> None:
        if not token:
            raise ValueError("the metadata server needs a non-empty write token")
        self.storage = storage
        self._token = token.encode("utf-8")
        self.max_body = max_body

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

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
        doc = await self._json_body(request)
        text = canonical(doc)
        etag = etag_of(text)
        outcome, version = await run_in_threadpool(
            self.storage.put, pointer, text, etag, create_only=create_only)
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
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != JSON_TYPE and not ctype.endswith("+json"):
            raise _Refused(415, f"content type {ctype or '(none)'!r} is not supported; "
                                f"send {JSON_TYPE}")
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            raise _Refused(413, f"body of {length} bytes exceeds the limit of {self.max_body}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise _Refused(413, f"body exceeds the limit of {self.max_body} bytes")
            chunks.append(chunk)
        try:
            doc = jsonsafe.loads(b"".join(chunks).decode("utf-8"), parse_constant=_no_constant)
            canonical(doc).encode("utf-8")  # what will be stored must be UTF-8 text
        except UnicodeEncodeError:
            raise _Refused(400, "body is not valid JSON: it holds an unpaired surrogate "
                                "(\\ud800-\\udfff)") from None
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
        Route("/{pointer}", handlers.get, methods=["GET"]),
        Route("/{pointer}", handlers.put, methods=["PUT"]),
        Route("/{pointer}", handlers.post, methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={
        _Refused: _refused, HTTPException: _http_error, Exception: _server_error})
