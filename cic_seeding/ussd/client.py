"""HTTP client of a USSD gateway (Africa's Talking style): one session at a time, many threads.

:meth:`UssdClient.session` walks a session: the first request has empty ``text``, each next one
the inputs so far joined by ``*``. Connection errors and 5xx answers are retried with bounded
exponential backoff (a gateway that restarts mid-session finds the session in Redis and
answers the same request again); when the budget is spent :class:`UssdUnavailableError`
names the URL. Retries and the circuit breaker are :class:`~cic_seeding.remote.Remote`'s; the
breaker, shared by the client's threads, counts requests that failed even after their retries;
once it opens, requests fail at once saying so, instead of every remaining session trying a
gateway that is gone.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from cic_seeding.config import Settings
from cic_seeding.errors import ConfigError, UssdError, UssdUnavailableError
from cic_seeding.remote import USSD_GATEWAY, AttemptFailed, BreakerPolicy, Remote, RetryPolicy

DEFAULT_SERVICE_CODE = "*483*46#"


@dataclass(frozen=True)
class Screen:
    """One reply: ``end`` when the gateway closed the session, ``text`` without the prefix."""

    end: bool
    text: str

    def __str__(self) -> str:
        return f"{'END' if self.end else 'CON'} {self.text}"


@dataclass(frozen=True)
class UssdEndpoint:
    url: str
    service_code: str


def ussd_endpoint(settings: Settings) -> UssdEndpoint | None:
    """Where the gateway is: ``ussd_url`` or a devnet started with ``--ussd`` (None: nowhere)."""
    url, code = settings.ussd_url, settings.ussd_service_code
    if not url:
        return None
    return UssdEndpoint(str(url).rstrip("/"), code or DEFAULT_SERVICE_CODE)


def ussd_unconfigured(settings: Settings) -> str | None:
    """Why no gateway is configured (None: one is)."""
    if ussd_endpoint(settings) is not None:
        return None
    return ("no USSD gateway is configured: set ussd_url (CIC_USSD_URL) or use a devnet "
            "started with --ussd")


class UssdClient:
    """Sessions against one gateway. Thread-safe (one pooled HTTP session)."""

    def __init__(self, url: str, service_code: str = DEFAULT_SERVICE_CODE, *,
                 timeout: float = 30.0, retries: int = 6, backoff: float = 0.1,
                 max_backoff: float = 2.0, pool_size: int = 32,
                 breaker: BreakerPolicy | None = None) -> None:
        self.url = url.rstrip("/")
        self.remote = Remote(USSD_GATEWAY, self.url,
                             RetryPolicy(retries, backoff, max_backoff, log_level=logging.INFO),
                             breaker)
        self.breaker = self.remote.breaker
        self.service_code = service_code
        self.timeout = timeout
        self._http = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self._http.mount("http://", adapter)
        self._http.mount("https://", adapter)

    @classmethod
    def from_settings(cls, settings: Settings, **kw: Any) -> UssdClient:
        endpoint = ussd_endpoint(settings)
        if endpoint is None:
            raise ConfigError(str(ussd_unconfigured(settings)))
        kw.setdefault("timeout", settings.rpc_timeout)
        kw.setdefault("breaker", BreakerPolicy.from_settings(settings))
        return cls(endpoint.url, endpoint.service_code, **kw)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> UssdClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def healthy(self) -> bool:
        try:
            return self._http.get(f"{self.url}/_health", timeout=self.timeout).status_code == 200
        except requests.RequestException:
            return False

    def request(self, session_id: str, phone: str, text: str,
                service_code: str | None = None) -> Screen:
        """One protocol request; retries transient failures, raises UssdError otherwise."""
        form = {"sessionId": session_id, "serviceCode": service_code or self.service_code,
                "phoneNumber": phone, "text": text}

        def attempt() -> Screen:
            try:
                response = self._http.post(self.url, data=form, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout,
                    requests.exceptions.ChunkedEncodingError) as exc:  # cut off mid-answer
                problem = f"no answer: {type(exc).__name__}"
            else:
                if response.status_code < 500:
                    return _screen(response, phone)
                problem = f"answered {response.status_code}: {response.text[:200]}"
            raise AttemptFailed(UssdUnavailableError(
                f"the USSD gateway {self.url} {problem} (phone {phone})"), problem)

        return self.remote.call(attempt)

    def session(self, phone: str, inputs: Sequence[str], *,
                session_id: str | None = None) -> list[Screen]:
        """Walk one session: the opening screen, then one screen per input, stopping early
        when the gateway ends the session. Returns the screens seen."""
        sid = session_id or uuid.uuid4().hex
        screens = [self.request(sid, phone, "")]
        for i in range(len(inputs)):
            if screens[-1].end:
                break
            screens.append(self.request(sid, phone, "*".join(inputs[:i + 1])))
        return screens


def _screen(response: requests.Response, phone: str) -> Screen:
    body = response.text
    if response.status_code >= 400 or not body.startswith(("CON ", "END ")):
        raise UssdError(f"the USSD gateway answered {response.status_code} for phone {phone}: "
                        f"{body[:200]!r}", hint="is the URL a USSD gateway speaking the "
                        "CON/END protocol?")
    return Screen(body.startswith("END "), body[4:])


