"""The engine's Celery application: ``celery -A cic_devnet.custodial.app worker``.

:func:`create_app` builds one from settings; the module attribute ``app`` is built from the
environment (and config file) of the process, which is how a worker finds its broker, queue,
database, passphrase and signer. When a worker is ready it opens the engine (failing loudly
on a bad configuration) and starts the queue loop (dispatcher and tracker) in a thread.

**Losing the broker.** A worker outlives Redis restarts: it retries the connection forever
(``broker_connection_max_retries=None``; the default gives up after 100 attempts), storing a
result waits for Redis to come back (``result_backend_always_retry``), and its broker transport
is :class:`RedisTransport`. With kombu's own, a worker holding late-acked tasks when Redis went
away *exited* ("Unrecoverable error: AttributeError: 'NoneType' object has no attribute
'hostname'"): the consumer drops the lost connection's transport, but the channel of those
tasks still uses it -- to restore them when it is closed, to ack each one when it finishes
(a thread cannot be cancelled) -- and finds no connection details. :class:`RedisChannel` turns
that into the connection error kombu and celery handle ("Couldn't ack ..."; the channel is
closed anyway). Such tasks are not lost: Redis keeps every delivered, unacknowledged task and
gives it back after :data:`VISIBILITY_TIMEOUT` (a Redis restarted without persistence has
lost them anyway: the client asks again; every task is idempotent).
"""

from __future__ import annotations

import logging
import threading
from typing import Any
from urllib.parse import urlsplit

import redis
from celery import Celery
from celery.signals import worker_ready, worker_shutdown
from kombu.transport import redis as kombu_redis

from cic_seeding.config import Settings, load_settings
from cic_seeding.custodial import endpoint
from cic_seeding.custodial.spool import SpoolPublisher, celery_settings, is_spool

from .config import engine_config
from .engine import Engine, open_engine
from .tasks import register
from .txqueue import QueueLoop

log = logging.getLogger(__name__)

#: Seconds before a task a dead worker took is given to another worker (acks are late).
VISIBILITY_TIMEOUT = 60


class EngineRef:
    """The process's engine, opened once on first use; and its callback publisher."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engine: Engine | None = None
        self._publisher: Any = None
        self._lock = threading.Lock()
        self.loop: QueueLoop | None = None

    def get(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = open_engine(engine_config(self.settings))
            return self._engine

    def publisher(self) -> Any:
        with self._lock:
            if self._publisher is None:
                broker = endpoint(self.settings)[0]
                if is_spool(broker):  # no Redis: replies are files in the spool directory
                    self._publisher = SpoolPublisher(broker)
                else:
                    import redis

                    self._publisher = redis.Redis.from_url(broker, socket_connect_timeout=3,
                                                           socket_timeout=5)
            return self._publisher

    def start_loop(self) -> None:
        """Run the dispatcher and tracker in this process (once)."""
        if self.loop is None:
            self.loop = QueueLoop(lambda: self.get().queue)
            self.get().on_queued = self.loop.wake
            self.loop.start()

    def close(self) -> None:
        if self.loop is not None:
            self.loop.stop()
            self.loop = None
        with self._lock:
            if self._engine is not None:
                self._engine.close()
                self._engine = None


class RedisChannel(kombu_redis.Channel):  # type: ignore[misc]  # kombu is untyped
    """kombu's Redis channel; used after its connection was dropped, a connection error."""

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection is None or self.connection.client is None:  # closed, or dropped
            raise redis.ConnectionError("this channel's broker connection was closed after it "
                                        "was lost; its unacknowledged tasks return from Redis")
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)
        return params


class RedisTransport(kombu_redis.Transport):  # type: ignore[misc]
    """kombu's Redis transport with :class:`RedisChannel` (see the module documentation)."""

    Channel = RedisChannel


def create_app(settings: Settings, *, queue_loop: bool = True) -> Celery:
    """A Celery app of the engine for ``settings`` (broker, queue); tasks registered.

    With ``queue_loop`` a worker of this app runs the dispatcher and tracker too.
    """
    broker, queue = endpoint(settings)
    spool = is_spool(broker)
    app = Celery("cic_custodial", broker=broker, backend=None if spool else broker,
                 set_as_current=False)
    if urlsplit(broker).scheme == "redis":  # (rediss:// keeps kombu's, which sets up TLS)
        app.conf.broker_transport = f"{__name__}:{RedisTransport.__name__}"
    app.conf.update(
        task_serializer="json", result_serializer="json", accept_content=["json"],
        task_default_queue=queue, task_acks_late=True, task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=4, result_expires=3600,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
        broker_connection_retry_on_startup=True, worker_hijack_root_logger=False,
        # a service outlives a broker outage of any length (see the module documentation)
        broker_connection_max_retries=None, result_backend_always_retry=True,
        # the thread pool cannot cancel a running task when the connection is lost ("Failed
        # to cancel" in the log): it finishes, its ack fails, Redis gives the task back after
        # the visibility timeout (tasks are idempotent); True is celery's future default
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_send_task_events=False, task_send_sent_event=False)
    if spool:  # files instead of Redis (cic_seeding.custodial.spool); no result backend
        app.conf.update(celery_settings(broker))
    app.cic_engine = EngineRef(settings)
    app.cic_queue_loop = queue_loop
    register(app)
    return app


@worker_ready.connect
def _on_ready(sender: Any = None, **_: Any) -> None:
    app = getattr(sender, "app", None)
    ref = getattr(app, "cic_engine", None)
    if app is None or not isinstance(ref, EngineRef):
        return
    ref.get()  # a worker that cannot open its engine says why at once
    if app.cic_queue_loop:
        ref.start_loop()
    log.info("custodial engine ready: %s", ref.get().status())


@worker_shutdown.connect
def _on_shutdown(sender: Any = None, **_: Any) -> None:
    app = getattr(sender, "app", None)
    ref = getattr(app, "cic_engine", None)
    if isinstance(ref, EngineRef):
        ref.close()



_APP: list[Celery] = []


def __getattr__(name: str) -> Any:
    """``app``: the engine the settings name (``celery -A cic_devnet.custodial.app worker``),
    made on first use, so that importing this module resolves no settings (nor reads a devnet
    directory that may not exist yet)."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if not _APP:
        _APP.append(create_app(load_settings()))
    return _APP[0]
