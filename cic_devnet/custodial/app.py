"""The engine's Celery application: ``celery -A cic_devnet.custodial.app worker``.

:func:`create_app` builds one from settings; the module attribute ``app`` is built from the
environment (and config file) of the process, which is how a worker finds its broker, queue,
database, passphrase and signer. When a worker is ready it opens the engine (failing loudly
on a bad configuration) and starts the queue loop (dispatcher and tracker) in a thread.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from cic_seeding.config import Settings, load_settings
from cic_seeding.importers._custodial import endpoint

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
                import redis

                self._publisher = redis.Redis.from_url(endpoint(self.settings)[0],
                                                       socket_connect_timeout=3,
                                                       socket_timeout=5)
            return self._publisher

    def start_loop(self) -> None:
        """Run the dispatcher and tracker in this process (once)."""
        if self.loop is None:
            self.loop = QueueLoop(lambda: self.get().queue)
            self.loop.start()

    def close(self) -> None:
        if self.loop is not None:
            self.loop.stop()
            self.loop = None
        with self._lock:
            if self._engine is not None:
                self._engine.close()
                self._engine = None


def create_app(settings: Settings, *, queue_loop: bool = True) -> Celery:
    """A Celery app of the engine for ``settings`` (broker, queue); tasks registered.

    With ``queue_loop`` a worker of this app runs the dispatcher and tracker too.
    """
    broker, queue = endpoint(settings)
    app = Celery("cic_custodial", broker=broker, backend=broker, set_as_current=False)
    app.conf.update(
        task_serializer="json", result_serializer="json", accept_content=["json"],
        task_default_queue=queue, task_acks_late=True, task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=4, result_expires=3600,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
        broker_connection_retry_on_startup=True, worker_hijack_root_logger=False,
        # on a lost broker connection, running tasks (acked late) are redelivered, not acked
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_send_task_events=False, task_send_sent_event=False)
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


app = create_app(load_settings())
