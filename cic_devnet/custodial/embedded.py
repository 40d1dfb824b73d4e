"""The custodial engine embedded in this process: SQLite storage, a Celery worker in a thread.

For a machine without PostgreSQL and Redis (``cic-seed demo --custodial``). It lives only as
long as the process that started it; its state (keys, nonces, the transaction queue) is a
SQLite file in the devnet directory.

Why a real Celery worker and not the :class:`~.engine.Engine` called directly: the point of the
embedded engine is to be the same service, reached the same way. So it is the engine's own
Celery application (:func:`~.app.create_app`, the tasks of :mod:`.tasks` with their transient
retries and callbacks) and a Celery ``WorkController`` on the thread pool, run in a thread;
the importer, the syncer and the verifier send it tasks by name with request ids through
:class:`~cic_seeding.custodial.CustodialClient` and read the replies from the callback
channel, falling back to the result backend, exactly as with the service. Only the wires
change (see :mod:`cic_seeding.custodial.local`): kombu's in-memory transport for
the broker, Celery's in-memory cache for the results, the process's reply bus for callbacks.
Calling the engine directly would have been simpler and a little faster, but then the demo
would not exercise the client/engine protocol at all. One process, so SQLite serialises the
writers (:mod:`._sqlite`) and the dispatcher/tracker runs in a thread beside the worker.

Two of Celery's process-wide settings follow the worker, as in a worker process, and are put
back by :meth:`EmbeddedEngine.stop`: the default app (the thread pool runs each task under it),
and the guard against waiting on a task's result inside a task.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from celery import Celery, _state
from celery.worker import WorkController
from kombu.transport import memory

from cic_seeding.config import Settings, load_settings
from cic_seeding.custodial.local import BUS, RESULT_BACKEND, ReplyBus
from cic_seeding.errors import ServiceError

from .app import EngineRef, create_app

log = logging.getLogger(__name__)

#: Seconds between looks at the in-memory queue while it is empty (kombu polls it).
POLL_INTERVAL = 0.01
#: Seconds the worker waits for messages before it looks whether it is being stopped.
WAKE_INTERVAL = 0.1


class MemoryTransport(memory.Transport):  # type: ignore[misc]  # kombu is untyped
    """kombu's in-memory transport (the same queues), waiting at most :data:`WAKE_INTERVAL`
    for messages at a time: celery's loop for such transports waits 2 s, and would hold
    :meth:`EmbeddedEngine.stop` that long."""

    def drain_events(self, connection: Any, timeout: Any = None, **kwargs: Any) -> Any:
        return super().drain_events(connection, min(timeout or WAKE_INTERVAL, WAKE_INTERVAL))


class _Ref(EngineRef):
    """The engine of the embedded worker; callbacks go out on the process's reply bus."""

    def publisher(self) -> ReplyBus:
        return BUS


class _Worker(WorkController):  # type: ignore[misc]  # celery is untyped
    """A WorkController that says when it consumes (or has ended)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.settled = threading.Event()
        self.consuming = False
        super().__init__(*args, **kwargs)

    def on_consumer_ready(self, consumer: Any) -> None:
        self.consuming = True
        self.settled.set()


class EmbeddedEngine:
    """The engine's Celery worker in a thread of this process; :meth:`stop` ends it."""

    def __init__(self, settings: Settings, info: dict[str, Any], *, concurrency: int = 4) -> None:
        self.settings = settings
        self.app: Celery = create_app(settings)
        self.app.conf.update(result_backend=RESULT_BACKEND, worker_enable_remote_control=False,
                             broker_transport=f"{__name__}:{MemoryTransport.__name__}",
                             broker_transport_options={"polling_interval": POLL_INTERVAL})
        self.ref = _Ref(settings)
        self.app.cic_engine = self.ref
        self.queue: str = self.app.conf.task_default_queue
        self.concurrency = concurrency
        #: devnet.json's ``custodial`` section.
        self.info = {**info, "embedded": True, "workers": []}
        self._worker: _Worker | None = None
        self._thread: threading.Thread | None = None
        self._restore: tuple[Any, bool] | None = None

    @classmethod
    def start(cls, env: dict[str, str], info: dict[str, Any], *, concurrency: int = 4,
              timeout: float = 30.0) -> EmbeddedEngine:
        """Open the engine ``env`` configures (the environment a worker process would get),
        start its dispatcher/tracker and its worker; returns once the worker consumes."""
        engine = cls(load_settings({}, config_file=None, environ=env), info,
                     concurrency=concurrency)
        try:
            engine._start(timeout)
        except BaseException:
            engine.stop()
            raise
        return engine

    def _start(self, timeout: float) -> None:
        status = self.ref.get().status()  # a bad configuration fails here, in this thread
        self.ref.start_loop()
        self._restore = (_state.default_app, _state.task_join_will_block())
        self.app.set_default()
        worker = self._worker = _Worker(
            app=self.app, pool="threads", concurrency=self.concurrency, queues=[self.queue],
            hostname=f"embedded-{os.getpid()}@{socket.gethostname()}", without_heartbeat=True,
            without_mingle=True, without_gossip=True)
        self._thread = threading.Thread(target=self._run, args=(worker,),
                                        name="cic-custodial-embedded", daemon=True)
        self._thread.start()
        if not worker.settled.wait(timeout):
            raise ServiceError(f"the embedded custodial engine's worker did not start within "
                               f"{timeout:.0f}s (queue {self.queue})",
                               hint="rerun with -v to see celery's log")
        if not worker.consuming:
            raise ServiceError(f"the embedded custodial engine's worker ended while starting "
                               f"(queue {self.queue}): celery logged why",
                               hint="rerun with -v to see celery's log")
        BUS.serve(self.queue)
        log.info("custodial engine embedded in this process: queue %s, %s, %d accounts",
                 self.queue, status["storage"], status["accounts"])

    @staticmethod
    def _run(worker: _Worker) -> None:
        try:
            worker.start()
        finally:
            worker.settled.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking tasks, let running ones finish, stop the dispatcher/tracker and close
        the database (idempotent)."""
        BUS.unserve(self.queue)
        worker, thread, self._worker, self._thread = self._worker, self._thread, None, None
        if worker is not None:
            worker.stop()
        if thread is not None:
            thread.join(timeout)
        self.ref.close()
        if self._restore is not None:
            default, blocks = self._restore
            self._restore = None
            _state.set_default_app(default)
            _state._set_task_join_will_block(blocks)
        self.app.close()
