"""The import worker of the ``celery`` executor: ``cic-seed import-worker``.

A worker consumes ``import_queue`` on ``import_broker_url`` with a thread pool. It needs its
chain (``--devnet DIR`` or ``-p RPC -r REGISTRY``) and the run's ``keystore_password``; no data
directory, no main signer: it signs with its own key, made on its first start in
``import_worker_dir`` (``signer.json`` and its password ``signer.pw``, both mode 0600; its
outbox, ``outbox.db``, records what it signs before it is broadcast) and made
a writer of the AccountsIndex, and given gas, by the dispatcher on first use (see
:mod:`cic_seeding.importers._celery_exec`). Workers of one machine may share that directory
(their nonces come from one file lock); workers of different machines each have their own.

The logic is :func:`import_batch`, a plain function (tested without a worker); the tasks are
thin adapters that run it, retry transient errors with backoff, and push the reply on the
run's Redis list.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cic_seeding.chain.batch_reader import BatchReader
from cic_seeding.chain.connect import connect
from cic_seeding.chain.keyfile import encrypt_v3
from cic_seeding.chain.registry import CicNetwork
from cic_seeding.chain.signer import Signer, read_password
from cic_seeding.config import Settings
from cic_seeding.datadir import UserRow
from cic_seeding.datadir.store import atomic_write
from cic_seeding.errors import CicSeedError, ImporterError, ServiceUnavailableError
from cic_seeding.importers._celery_exec import (
    RUN_KEY,
    TASK_BATCH,
    TASK_STATUS,
    Job,
    create_app,
    redact,
    redis_client,
)
from cic_seeding.importers._keyfiles import KeyfileWriter
from cic_seeding.importers.base import Submission
from cic_seeding.importers.eth import ADD_GAS, EthImporter
from cic_seeding.outbox import Outbox, outbox_for
from cic_seeding.remote import RetryPolicy
from cic_seeding.state import OutTx, norm, open_state_store

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)

KEYFILE, PASSWORD_FILE = "signer.json", "signer.pw"
#: A worker asks for gas when it holds less than this many batches' worth, and asks for
#: enough for TOPUP_BATCHES (its threads send several batches at once).
LOW_WATER_BATCHES, TOPUP_BATCHES = 4, 20
#: Retries of a batch task that failed transiently (not after its client's own retries: the
#: RPC node's errors come exhausted), Celery sending it again after a backoff of 0.5 s ... 30 s.
TASK_RETRY = RetryPolicy(retries=5, base=0.5, cap=30.0)
#: The worker's own outbox (SQLite) in its directory: what it signed survives a restart.
OUTBOX_FILE = "outbox.db"


def default_worker_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "cic-seeding" / "import-worker"


def worker_signer(directory: Path) -> Signer:
    """The worker's own key in ``directory``, made there on first use (under a file lock, so
    workers of one machine starting together make one key)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    keyfile, pw = directory / KEYFILE, directory / PASSWORD_FILE
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if not keyfile.is_file():
            key, password = secrets.token_bytes(32), secrets.token_hex(16)
            atomic_write(pw, password.encode(), 0o600)
            atomic_write(keyfile, json.dumps(encrypt_v3(key, password, n=2**12)).encode(),
                         0o600)
            return Signer.from_key(key)
        return Signer.from_keyfile(keyfile, read_password(None, str(pw), "import worker key"))
    finally:
        os.close(fd)


class _Registrar(EthImporter):
    """The eth importer's chain primitives (:meth:`done_on_chain`, :meth:`submit`,
    :meth:`outcomes`) as a worker runs them: with the worker's signer and without a data
    directory or state store (the dispatcher keeps those). One per batch; it keeps the
    batch's signed transactions for the reply instead of writing them under ``tx/``."""

    def __init__(self, network: CicNetwork, outbox: Outbox, stop: threading.Event,
                 reader: BatchReader) -> None:
        # deliberately not EthImporter.__init__: no data directory, state store or keyfile
        # writer; the worker's own outbox (in its directory) records what it signs
        self.network = network
        self.client = network.client
        self.index = network.accounts_index
        self.funder = None
        self.outbox = outbox
        self._mine_each = True  # a worker's batch is one block of its own
        self.stop = stop
        self._send_errors: dict[str, str] = {}
        self._rows: dict[str, UserRow] = {}
        self._replaced: dict[str, int] = {}
        self.txs: dict[str, str] = {}
        self._batch_reader = reader

    def _record(self, start: int, signed: Sequence[OutTx]) -> None:
        self.txs.update((tx.tx_hash, tx.raw) for tx in signed)

    def _resubmitted(self, subs: Sequence[Submission]) -> None:
        return None  # the dispatcher records what the reply says


class WorkerContext:
    """What one worker process keeps between tasks: its chain, its signer, a keyfile process
    pool and a Redis connection for replies. Thread-safe."""

    def __init__(self, settings: Settings, name: str = "") -> None:
        self.settings = settings
        self.name = name or f"import-{socket.gethostname()}-{os.getpid()}"
        self.signer = worker_signer(Path(settings.import_worker_dir or default_worker_dir()))
        self.network = connect(settings, signer=False)
        self.network.client.signer = self.signer
        self.index = self.network.accounts_index
        directory = Path(settings.import_worker_dir or default_worker_dir())
        self.store = open_state_store(url=str(directory / OUTBOX_FILE))
        self.outbox = outbox_for(settings, self.network.client, self.store, archive=False)
        self.reader = BatchReader(self.network.client.rpc)  # probed once, not per batch
        self.keys = KeyfileWriter(Path("."), 0, settings.keystore_password, "light",
                                  settings.workers)
        self.stop = threading.Event()
        self._writer = False
        self._redis: Any = None
        self._lock = threading.Lock()

    def status(self) -> dict[str, Any]:
        return {"worker": self.name, "signer": self.signer.address,
                "chain_id": self.network.client.chain_id, "accounts_index": self.index}

    def is_writer(self) -> bool:
        if not self._writer:  # once a writer, always (nobody removes writers while seeding)
            self._writer = self.network.is_writer(self.index, self.signer.address)
        return self._writer

    def redis(self) -> Any:
        with self._lock:
            if self._redis is None:
                self._redis = redis_client(self.settings.import_broker_url)
            return self._redis

    def run_open(self, run: str) -> bool:
        """False once the dispatcher of ``run`` has ended (its tasks left are skipped)."""
        import redis

        try:
            return bool(self.redis().exists(RUN_KEY.format(run)))
        except (redis.RedisError, OSError) as exc:
            raise ServiceUnavailableError(f"import worker {self.name}: the broker "
                                          f"{redact(self.settings.import_broker_url)} does not "
                                          f"answer: {exc}") from None

    def push(self, key: str, reply: Mapping[str, Any]) -> None:
        with self.redis().pipeline() as pipe:
            pipe.rpush(key, json.dumps(reply))
            pipe.expire(key, 86_400)
            pipe.execute()

    def close(self) -> None:
        self.stop.set()
        self.keys.close()
        self.store.close()
        if self._redis is not None:
            self._redis.close()


def import_batch(ctx: WorkerContext, job: Job, batch: int,
                 users: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """Register one batch of users from the worker's signer; the reply for the dispatcher.

    ``users`` are ``[index, address, needs_keyfile]``. A signer that is not yet a writer or is
    short of gas makes the reply ``{"needs": ...}`` and nothing is done."""
    client = ctx.network.client
    if job.chain_id != client.chain_id or norm(job.accounts_index) != norm(ctx.index):
        raise ImporterError(
            f"import worker {ctx.name} works on chain id {client.chain_id} (AccountsIndex "
            f"{ctx.index}) at {client.rpc.url}, the run on chain id {job.chain_id} "
            f"(AccountsIndex {job.accounts_index})",
            hint="start the worker with the run's chain (--devnet DIR or -p RPC -r REGISTRY)")
    head = {"batch": batch, "worker": ctx.name, "signer": ctx.signer.address}
    needs = _needs(ctx, len(users))
    if needs is not None:
        return {**head, "needs": needs}
    keyfiles, bad = ctx.keys.make([(int(i), str(a)) for i, a, want in users if want],
                                  seed=job.seed, kdf=job.kdf)
    rows = [UserRow(int(i), str(a), "") for i, a, _ in users if a not in bad]
    registrar = _Registrar(ctx.network, ctx.outbox, ctx.stop, ctx.reader)
    found = registrar.done_on_chain(rows) if rows else {}
    rest = [u for u in rows if u.address not in found]
    subs = registrar.submit(rest) if rest else []
    outs = registrar.outcomes(subs) if subs else []
    return {**head, "keyfiles": keyfiles, "bad": bad, "found": list(found),
            "sent": {s.address: s.ref for s in subs}, "txs": registrar.txs,
            "confirmed": [o.address for o in outs if o.ok],
            "failed": {o.address: o.reason or "failed" for o in outs if not o.ok}}


def _needs(ctx: WorkerContext, count: int) -> dict[str, Any] | None:
    """What the worker's signer lacks for ``count`` adds (None: nothing)."""
    client = ctx.network.client
    batch_gas = count * ADD_GAS * client.gas_price()
    (balance,) = client.native_balances([ctx.signer.address])
    writer = ctx.is_writer()
    if writer and balance >= LOW_WATER_BATCHES * batch_gas:
        return None
    return {"signer": ctx.signer.address, "writer": writer,
            "wei": LOW_WATER_BATCHES * batch_gas, "topup": TOPUP_BATCHES * batch_gas}


# -- the Celery side: thin adapters ----------------------------------------------------------
def register(app: Celery, context: Callable[[], WorkerContext]) -> None:
    """Register the ``cic_seeding.import.*`` tasks on ``app``."""

    @app.task(name=TASK_BATCH, bind=True, max_retries=TASK_RETRY.retries)  # type: ignore[untyped-decorator]
    def batch_task(self: Any, job: dict[str, Any], batch: int, users: list[list[Any]],
                   reply_to: str) -> None:
        ctx, parsed = context(), Job.from_dict(job)
        try:
            if not ctx.run_open(parsed.run):
                return  # the run ended (stopped, or its batches were settled)
            reply = import_batch(ctx, parsed, batch, users)
        except CicSeedError as exc:
            retried = self.request.retries
            if TASK_RETRY.retryable(exc) and retried < TASK_RETRY.retries:
                raise self.retry(exc=exc, countdown=TASK_RETRY.delay(retried)) from exc
            reply = _error(ctx, batch, str(exc), exc.transient)
        except Exception as exc:  # a bug: the dispatcher must hear of it, not time out
            log.exception("import worker %s: batch %s failed", ctx.name, batch)
            reply = _error(ctx, batch, f"{type(exc).__name__}: {exc}", False)
        ctx.push(reply_to, {**reply, "task_id": self.request.id})

    @app.task(name=TASK_STATUS, bind=True)  # type: ignore[untyped-decorator]
    def status_task(self: Any, reply_to: str) -> None:
        ctx = context()
        ctx.push(reply_to, {"task_id": self.request.id, "status": ctx.status()})


def _error(ctx: WorkerContext, batch: int, message: str, transient: bool) -> dict[str, Any]:
    return {"batch": batch, "worker": ctx.name, "signer": ctx.signer.address,
            "error": message, "transient": transient}


def run_worker(settings: Settings, *, concurrency: int = 2, name: str | None = None,
               loglevel: str = "INFO", announce: Callable[[str], None] = log.info) -> int:
    """Run an import worker in this process until it is stopped (SIGTERM / Ctrl-C)."""
    hostname = name or f"import-{os.getpid()}@{socket.gethostname()}"
    ctx = WorkerContext(settings, hostname)  # chain and key first: a bad setting fails here
    app = create_app(settings)
    register(app, lambda: ctx)
    announce(f"import worker {hostname}: signer {ctx.signer.address}, chain id "
             f"{ctx.network.client.chain_id}, AccountsIndex {ctx.index}, queue "
             f"{settings.import_queue!r} on {redact(settings.import_broker_url)}")
    try:
        app.worker_main(["worker", "--pool", "threads", "--concurrency", str(concurrency),
                         "--queues", settings.import_queue, "--hostname", hostname,
                         "--without-mingle", "--without-gossip", "--without-heartbeat",
                         "--loglevel", loglevel])
    finally:
        ctx.close()
    return 0


# -- starting workers as processes (tests, benchmarks) -----------------------------------------
def spawn_worker(env: Mapping[str, str], *, name: str, log_file: Path, concurrency: int = 2,
                 cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``cic-seed import-worker`` as a child process; its settings are in ``env``.

    Stop it by its pid (``terminate()``, or ``kill()`` as a crash would)."""
    cmd = [sys.executable, "-m", "cic_seeding.cli.main", "import-worker", "--name",
           f"{name}@{socket.gethostname()}", "--concurrency", str(concurrency)]
    with open(log_file, "ab") as out:
        return subprocess.Popen(cmd, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=out)


def wait_workers(settings: Settings, names: Sequence[str], procs: Sequence[Any] = (),
                 timeout: float = 60.0) -> None:
    """Wait until every worker of ``names`` (as given to :func:`spawn_worker`) answers a ping.

    ImporterError if one of ``procs`` (Popen objects) exits first or the time runs out."""
    from kombu.exceptions import OperationalError

    app = create_app(settings)
    wanted = {f"{n}@{socket.gethostname()}" for n in names}
    deadline = time.monotonic() + timeout
    try:
        while True:
            dead = [p for p in procs if p.poll() is not None]
            if dead:
                raise ImporterError(f"import worker {dead[0].args} exited while starting "
                                    f"(status {dead[0].returncode})")
            with contextlib.suppress(OperationalError, OSError):  # the broker is not up yet
                for answer in app.control.ping(destination=sorted(wanted), timeout=0.5):
                    wanted -= set(answer)
            if not wanted:
                return
            if time.monotonic() > deadline:
                raise ImporterError(f"import workers {', '.join(sorted(wanted))} did not "
                                    f"answer within {timeout:.0f}s")
    finally:
        app.close()
