"""The client's side of a custodial engine embedded in this process (broker ``memory://``).

An embedded engine (:mod:`cic_devnet.custodial.embedded`, which ``cic-seed demo --custodial``
runs) is the engine's own Celery application with its worker in a thread of this process, on
SQLite. A client drives it exactly as it drives the service -- tasks sent by name with request
ids and a callback channel, replies on that channel, the result backend as a fallback -- only
the wires are in memory: kombu's in-memory transport instead of Redis for the tasks, Celery's
in-memory cache backend for the results, and :data:`BUS`, this process's reply bus, for what
the service publishes on Redis channels.

All of it is per process. An engine embedded in another process is out of reach -- there is
nothing to connect to -- and :func:`unreachable` says so at once, instead of a timeout later.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from queue import Empty, SimpleQueue

from cic_seeding.custodial.client import CustodialClient
from cic_seeding.errors import CustodialUnavailableError

log = logging.getLogger(__name__)

#: The broker URL of an embedded engine (kombu's in-memory transport).
EMBEDDED_BROKER = "memory://localhost/"
#: Its result backend: Celery's in-memory cache, shared by every Celery app of the process.
RESULT_BACKEND = "cache+memory://"


def is_embedded(broker_url: str) -> bool:
    """Whether ``broker_url`` names an engine embedded in a process (``memory://``)."""
    return broker_url.startswith("memory://")


class ReplyBus:
    """Publish/subscribe by channel name inside this process, as Redis pub/sub is for the
    service; also which queues an embedded engine of this process consumes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inboxes: dict[str, SimpleQueue[str]] = {}
        self._served: set[str] = set()

    def publish(self, channel: str, message: str) -> int:
        """Deliver ``message`` to the subscriber of ``channel``; how many got it (0 or 1)."""
        with self._lock:
            inbox = self._inboxes.get(channel)
        if inbox is None:
            return 0
        inbox.put(message)
        return 1

    def subscribe(self, channel: str) -> SimpleQueue[str]:
        with self._lock:
            return self._inboxes.setdefault(channel, SimpleQueue())

    def unsubscribe(self, channel: str) -> None:
        with self._lock:
            self._inboxes.pop(channel, None)

    def serve(self, queue_name: str) -> None:
        with self._lock:
            self._served.add(queue_name)

    def unserve(self, queue_name: str) -> None:
        with self._lock:
            self._served.discard(queue_name)

    def serves(self, queue_name: str) -> bool:
        with self._lock:
            return queue_name in self._served


#: The process's reply bus: embedded engines publish on it, clients listen on it.
BUS = ReplyBus()


def unreachable(queue_name: str) -> str | None:
    """Why no embedded engine of this process answers on ``queue_name`` (None: one does)."""
    if BUS.serves(queue_name):
        return None
    return (f"the custodial engine on queue {queue_name!r} is embedded in another process "
            "(broker memory://) and ends with it; only that process can reach it (run "
            "`cic-seed demo --custodial`, or start workers with `cic-seed devnet up --custodial`"
            " and PostgreSQL and Redis)")


class LocalClient(CustodialClient):
    """A :class:`CustodialClient` of an engine embedded in this process: the same requests
    and replies, carried in memory (see the module documentation)."""

    def __init__(self, broker_url: str, queue: str, *, timeout: float = 120.0,
                 connect_timeout: float = 3.0) -> None:
        super().__init__(broker_url, queue, timeout=timeout, connect_timeout=connect_timeout)
        self._app.conf.result_backend = RESULT_BACKEND
        self._inbox: SimpleQueue[str] | None = None

    def describe(self) -> str:
        return f"queue {self.queue!r} of the engine embedded in this process"

    def open(self) -> None:
        """Subscribe to the reply channel; CustodialUnavailableError when no engine of this
        process consumes the queue."""
        if self._inbox is not None:
            return
        reason = unreachable(self.queue)
        if reason is not None:
            raise CustodialUnavailableError(reason)
        self._inbox = BUS.subscribe(self.channel)

    def close(self) -> None:
        BUS.unsubscribe(self.channel)
        self._inbox = None
        self._app.close()

    def forget(self, task_ids: Iterable[str]) -> None:
        ids = list(task_ids)
        super().forget(ids)
        for task_id in ids:
            self._app.backend.forget(task_id)

    def _listen(self, wait: float) -> None:
        if self._inbox is None:
            self.open()
        assert self._inbox is not None
        try:
            data = self._inbox.get(timeout=max(wait, 0.0))
        except Empty:
            return
        self._take(data)

    def _poll_results(self, task_ids: Sequence[str]) -> None:
        self._last_poll = time.monotonic()
        backend = self._app.backend
        for task_id in task_ids:
            self._take_result(task_id, backend.get(backend.get_key_for_task(task_id)))
