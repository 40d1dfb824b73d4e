"""The gateway's ASGI app: ``POST /`` speaks the USSD protocol, ``GET /_health`` answers ok.

A malformed request (missing field, unknown service code, a phone number that is not E.164)
is refused with 400 and an ``END`` text; a store that is away gives 503 (retry); user input
never causes an error status.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from cic_devnet.ussd.gateway import Gateway
from cic_seeding.errors import CicSeedError
from cic_seeding.ussd.texts import text

log = logging.getLogger(__name__)
FIELDS = ("sessionId", "serviceCode", "phoneNumber", "text")
MAX_BODY = 8 * 1024


def _transient(exc: BaseException) -> bool:
    import psycopg2
    import redis

    if isinstance(exc, CicSeedError):
        return exc.transient
    return isinstance(exc, (redis.RedisError, psycopg2.OperationalError, OSError))


def create_app(gateway: Gateway) -> Starlette:
    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def ussd(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY:
            return PlainTextResponse("END request too large", status_code=413)
        try:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True,
                            max_num_fields=16) if body else {}
        except (UnicodeDecodeError, ValueError):  # not a form: refused as malformed
            return PlainTextResponse("END expected a form-encoded body", status_code=400)
        values = {}
        for name in FIELDS:
            got = form.get(name, [""] if name == "text" else [])
            if len(got) != 1:
                return PlainTextResponse(f"END expected form field {name} once",
                                         status_code=400)
            values[name] = got[0]
        try:
            answer = await run_in_threadpool(
                gateway.handle, values["sessionId"], values["serviceCode"],
                values["phoneNumber"], values["text"])
        except Exception as exc:
            if _transient(exc):
                log.warning("request of %s not served: %s", values["phoneNumber"], exc)
                return PlainTextResponse(f"END {text('unavailable')}", status_code=503)
            log.exception("request of %s failed", values["phoneNumber"])
            return PlainTextResponse(f"END {text('unavailable')}", status_code=500)
        return PlainTextResponse(answer.body, status_code=answer.status)

    return Starlette(routes=[Route("/_health", health, methods=["GET"]),
                             Route("/", ussd, methods=["POST"])])
