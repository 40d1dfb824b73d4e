"""USSD sessions in Redis, each under ``<prefix>:<sessionId>`` with an expiry."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from cic_devnet.ussd.menus import Session

#: Seconds a session lives after its last request (a USSD session times out in minutes).
DEFAULT_TTL = 180


class Sessions:
    """Session state in Redis; every write renews the expiry."""

    def __init__(self, redis_url: str, *, prefix: str = "cic_ussd:session",
                 ttl: int = DEFAULT_TTL) -> None:
        import redis

        self._redis: Any = redis.Redis.from_url(redis_url, socket_connect_timeout=3,
                                                socket_timeout=5)
        self.prefix = prefix
        self.ttl = ttl

    def _key(self, session_id: str) -> str:
        return f"{self.prefix}:{session_id}"

    def get(self, session_id: str) -> Session | None:
        raw = self._redis.get(self._key(session_id))
        if raw is None:
            return None
        return Session(**json.loads(raw))

    def put(self, session_id: str, session: Session) -> None:
        self._redis.set(self._key(session_id), json.dumps(asdict(session)), ex=self.ttl)

    def ping(self) -> bool:
        return bool(self._redis.ping())

    def close(self) -> None:
        self._redis.close()
