"""The engine's Celery tasks: thin adapters over :class:`~.engine.Engine`, one per API call.

Names are namespaced (``cic_custodial.<area>.<verb>``, see
:mod:`cic_seeding.custodial` for arguments and replies). Every task takes ids and
plain values, returns a JSON object, never waits for another task, retries only transient
errors (:attr:`CicSeedError.transient`) with backoff, and -- given ``callback``, a Redis
channel name -- publishes its outcome there as well as in the Celery result backend.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from celery import Celery, Task

from cic_seeding.custodial import (
    TASK_BALANCE,
    TASK_CREATE,
    TASK_CREATE_MANY,
    TASK_HAVE,
    TASK_STATUS,
    TASK_TRANSFER,
    TASK_TX_STATUS,
)
from cic_seeding.errors import CicSeedError

from .engine import Engine

log = logging.getLogger(__name__)

#: Retries of a transient error, with delays 0.5, 1, 2, 4, 8 s.
MAX_RETRIES = 5


class EngineTask(Task):  # type: ignore[misc]  # celery is untyped
    """Base of the engine's tasks: the process's engine, transient-only retries, callbacks."""

    max_retries = MAX_RETRIES

    @property
    def engine(self) -> Engine:
        engine: Engine = self.app.cic_engine.get()
        return engine

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except CicSeedError as exc:
            if exc.transient and not self.request.called_directly \
                    and self.request.retries < self.max_retries:
                log.warning("%s[%s]: %s; retrying", self.name, self.request.id, exc)
                raise self.retry(exc=exc, countdown=0.5 * 2 ** self.request.retries) from exc
            raise

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        self._publish(kwargs, {"task_id": task_id, "task": self.name, "status": "ok",
                               "result": retval})

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any,
                   einfo: Any) -> None:
        self._publish(kwargs, {"task_id": task_id, "task": self.name, "status": "error",
                               "error": {"type": type(exc).__name__, "message": str(exc),
                                         "transient": transient(exc)}})

    def _publish(self, kwargs: Any, message: dict[str, Any]) -> None:
        channel = kwargs.get("callback") if isinstance(kwargs, dict) else None
        if not channel:
            return
        try:
            self.app.cic_engine.publisher().publish(str(channel), json.dumps(message))
        except Exception as exc:  # the result backend still holds the outcome
            log.warning("%s[%s]: callback to %s not published: %s", self.name,
                        message["task_id"], channel, exc)


def transient(exc: BaseException) -> bool:
    """Whether asking again may help: a transient CicSeedError, or a connection failure."""
    if isinstance(exc, CicSeedError):
        return exc.transient
    import redis
    from kombu.exceptions import OperationalError

    return isinstance(exc, (OSError, redis.ConnectionError, redis.TimeoutError,
                            OperationalError))


def register(app: Celery) -> None:
    """Add the engine's tasks to ``app``."""
    # not shared: each app has its own (another app of the process, e.g. an embedded engine's
    # beside the module's ``app``, would get them twice)
    options: dict[str, Any] = {"base": EngineTask, "bind": True, "shared": False}

    @app.task(name=TASK_CREATE, **options)  # type: ignore[untyped-decorator]
    def create_account(self: EngineTask, request_id: str, gas_gift: int = 0,
                       faucet: bool = False, callback: str | None = None) -> dict[str, Any]:
        """Create the account of ``request_id`` (once) and queue its registration."""
        return self.engine.create_account(request_id, gas_gift=gas_gift, faucet=faucet)

    @app.task(name=TASK_CREATE_MANY, **options)  # type: ignore[untyped-decorator]
    def create_accounts(self: EngineTask, requests: list[dict[str, Any]],
                        callback: str | None = None) -> dict[str, Any]:
        """``account.create`` for many requests in one database transaction: one reply per
        request, in their order (a bad request gets an ``error`` and costs only itself)."""
        return {"accounts": self.engine.create_accounts(requests)}

    @app.task(name=TASK_HAVE, **options)  # type: ignore[untyped-decorator]
    def have(self: EngineTask, addresses: list[str], callback: str | None = None
             ) -> dict[str, Any]:
        """Whether the engine holds the key of each address."""
        return {"have": self.engine.have(addresses)}

    @app.task(name=TASK_BALANCE, **options)  # type: ignore[untyped-decorator]
    def balance(self: EngineTask, address: str, token: str | None = None,
                callback: str | None = None) -> dict[str, Any]:
        """Token and native balance of an address."""
        return self.engine.balance(address, token)

    @app.task(name=TASK_TRANSFER, **options)  # type: ignore[untyped-decorator]
    def transfer(self: EngineTask, sender: str, recipient: str, amount: int,
                 token: str | None = None, request_id: str | None = None,
                 callback: str | None = None) -> dict[str, Any]:
        """Queue a token transfer from a custodial account (once per request id)."""
        return self.engine.transfer(sender, recipient, amount, token, request_id)

    @app.task(name=TASK_TX_STATUS, **options)  # type: ignore[untyped-decorator]
    def tx_status(self: EngineTask, tx_ids: list[int], callback: str | None = None
                  ) -> dict[str, Any]:
        """Where queued transactions stand."""
        return {"txs": self.engine.tx_status(tx_ids)}

    @app.task(name=TASK_STATUS, **options)  # type: ignore[untyped-decorator]
    def status(self: EngineTask, callback: str | None = None) -> dict[str, Any]:
        """The engine's signer, chain, registry and queue counts (a health check), and the
        tasks it answers (clients use the batch tasks an engine offers)."""
        return {**self.engine.status(),
                "tasks": sorted(t for t in self.app.tasks if t.startswith("cic_custodial."))}
