"""The ``celery`` executor of the sovereign importer: batches of users as Celery tasks, so
import workers on any number of machines seed one data directory together.

    cic-seed import-worker --devnet DIR            # on every machine (same broker and queue)
    cic-seed import eth --executor celery --dir DATA --devnet DIR

**Who does what.** The *dispatcher* (this module, inside ``cic-seed import eth``) owns the data
directory and the state store. It walks the users not yet confirmed, checks their records,
sends one ``cic_seeding.import.eth.batch`` task per batch (``import_in_flight`` at a time)
and records every reply: keyfiles under ``keystore/``, raw transactions under ``tx/``, person
records under ``new/`` and the per-user state. It is the only writer of the state store, so
the default SQLite file does; no database is shared between machines. An *import worker*
(``cic-seed import-worker``, :mod:`cic_seeding.importers.celery_worker`) needs no data
directory and no database: per batch it derives the users' keys from the manifest seed (in
the task), makes their keyfiles in a process pool (with its own ``keystore_password``), asks
the AccountsIndex which users it already holds, sends ``add(address)`` for the others signed
with **its own key**, waits for the receipts and replies with all of it.

**Nonces: one signer per worker.** A worker's key is made on its first start and kept in
``import_worker_dir``; its nonces come from the file-lock allocator of its own machine
(:mod:`cic_seeding.chain.nonce`), which is all one key needs, so nothing is locked across
machines and the main signer stays free for the syncer running beside. A worker whose key is
not a writer of the AccountsIndex yet, or is short of gas for the batch, replies so instead of
working; the dispatcher has the main signer (the AccountsIndex's owner) call ``addWriter`` and
send it gas, then sends the batch again. (The other design, one shared signer whose nonce is
a PostgreSQL row taken ``SELECT ... FOR UPDATE``, would queue every worker's sends behind one
row lock and race the syncer's allocator on the same key.)

**Exactly once.** The AccountsIndex refuses a second ``add`` of an address, a worker asks it
before sending, and an ``add`` that reverts because the address is there counts as done: a
batch that runs twice (sent again after ``import_task_timeout`` without a reply, or given to
another worker by the broker after its worker died) registers nobody twice. The dispatcher
marks a user confirmed only from a reply, after writing its traces; a rerun starts from the
state store and the chain, as with the local executor. Replies come back on a Redis list
named per run; a reply to a batch already settled is ignored, and workers skip the tasks of
a run that has ended.

Differences from the local executor: raw transactions reach ``tx/`` after their broadcast
(they are a trace; resume relies on the chain), and every worker must have the dispatcher's
``keystore_password`` (checked on the first keyfile from each worker signer).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from cic_seeding.chain.keyfile import decrypt_v3
from cic_seeding.chain.registry import ACCOUNTS_INDEX
from cic_seeding.chain.tx import Call
from cic_seeding.config import Settings
from cic_seeding.datadir import UserRow, keyfile_path
from cic_seeding.datadir.store import atomic_write
from cic_seeding.errors import ImporterError, ServiceUnavailableError, SignerError
from cic_seeding.importers._records import record_problem
from cic_seeding.importers.base import ImportResult, Submission
from cic_seeding.remote import IMPORT_BROKER, RetryPolicy
from cic_seeding.state import norm

if TYPE_CHECKING:
    from celery import Celery

    from cic_seeding.chain.client import ChainClient
    from cic_seeding.chain.registry import CicNetwork
    from cic_seeding.datadir import DataDir, Manifest


class Registrar(Protocol):
    """What the executor needs of the importer whose batches it runs (``eth``)."""

    settings: Settings
    network: CicNetwork
    client: ChainClient
    index: str
    manifest: Manifest
    data: DataDir
    batch_size: int
    stop: threading.Event

    def record_found(self, users: Sequence[UserRow], found: Mapping[str, str | None],
                     result: ImportResult) -> None: ...

    def record_submitted(self, subs: Sequence[Submission], result: ImportResult) -> None: ...

    def record_confirmed(self, done: Sequence[tuple[UserRow, str | None]],
                         result: ImportResult) -> None: ...

    def record_failed(self, failures: list[tuple[str, str]], result: ImportResult) -> None: ...

log = logging.getLogger(__name__)
T = TypeVar("T")

TASK_BATCH = "cic_seeding.import.eth.batch"
TASK_STATUS = "cic_seeding.import.status"
#: Redis keys of one run: the list its replies arrive on, and the mark that it still runs.
REPLY_KEY, RUN_KEY = "cic_seeding.import.reply.{}", "cic_seeding.import.run.{}"
KEY_TTL = 86_400
#: Seconds a run waits for some worker to answer the status task before it starts.
STATUS_TIMEOUT = 15.0
#: Times a batch without a reply is sent again before its users fail (a rerun resumes).
RESENDS = 2


def create_app(settings: Settings) -> Celery:
    """The import executor's Celery app (broker ``import_broker_url``, queue ``import_queue``).

    Replies do not use a result backend: they are pushed on the run's Redis list."""
    from celery import Celery

    app = Celery("cic_seeding_import", broker=settings.import_broker_url,
                 set_as_current=False)
    app.conf.update(
        task_serializer="json", accept_content=["json"], task_default_queue=settings.import_queue,
        task_ignore_result=True, task_acks_late=True, task_reject_on_worker_lost=True,
        # one task reserved per thread: a worker that dies holds as few batches as possible
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": max(1, int(settings.import_task_timeout))},
        broker_connection_retry_on_startup=True, broker_connection_max_retries=None,
        worker_hijack_root_logger=False, worker_send_task_events=False,
        task_send_sent_event=False, worker_cancel_long_running_tasks_on_connection_loss=True)
    return app


def redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=30)


def redact(url: str) -> str:
    head, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    auth, _, host = rest.rpartition("@")
    return f"{head}://{auth.split(':', 1)[0]}:****@{host}" if ":" in auth else url


@dataclass(frozen=True)
class Job:
    """What every batch task of one run carries. No secret: the seed is in the manifest, and
    a worker takes the keystore password from its own settings."""

    run: str
    chain_id: int
    accounts_index: str
    seed: int
    kdf: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Job:
        return cls(str(doc["run"]), int(doc["chain_id"]), str(doc["accounts_index"]),
                   int(doc["seed"]), str(doc["kdf"]))


@dataclass
class _Flight:
    """One batch on its way: the task ids of its attempts (any of their replies settles it)."""

    number: int
    users: list[UserRow]
    task_ids: list[str] = field(default_factory=list)
    deadline: float = 0.0
    resends: int = 0


class CeleryExecutor:
    """Runs an importer's (``eth``'s) batches on import workers."""

    def __init__(self, importer: Registrar) -> None:
        self.importer = importer
        settings = importer.settings
        self.broker = settings.import_broker_url
        self.queue = settings.import_queue
        self.timeout = settings.import_task_timeout
        self.window = max(1, settings.import_in_flight)
        self.job = Job(uuid.uuid4().hex, importer.client.chain_id, importer.index,
                       importer.manifest.seed, settings.keystore_kdf)
        self.reply_key = REPLY_KEY.format(self.job.run)
        self.run_key = RUN_KEY.format(self.job.run)
        self._app: Celery | None = None
        self._redis: Any = None
        self._flights: dict[int, _Flight] = {}
        self._checked: set[str] = set()  # worker signers whose keyfiles we could open

    def describe(self) -> str:
        return f"queue {self.queue!r} on {redact(self.broker)}"

    # -- the run -----------------------------------------------------------------------------
    def run_batches(self, todo: Sequence[UserRow], result: ImportResult) -> None:
        self._app = create_app(self.importer.settings)
        self._redis = redis_client(self.broker)
        try:
            self._redo(lambda: self._redis.set(self.run_key, "1", ex=KEY_TTL), "marking the run")
            self._hello()
            size = self.importer.batch_size
            batches = iter(enumerate(todo[i:i + size] for i in range(0, len(todo), size)))
            while True:
                while len(self._flights) < self.window:
                    item = next(batches, None)
                    if item is None:
                        break
                    self._dispatch(item[0], list(item[1]), result)
                if not self._flights:
                    return
                if self.importer.stop.is_set():
                    raise KeyboardInterrupt
                reply = self._pop(self._wait())
                if reply is not None:
                    self._handle(reply, result)
                self._expire(result)
        finally:
            self._close()

    def _close(self) -> None:
        import redis

        try:
            self._redis.delete(self.run_key, self.reply_key)  # workers skip what is left
        except (redis.RedisError, OSError) as exc:
            log.debug("run keys not deleted (they expire): %s", exc)
        self._redis.close()
        if self._app is not None:
            self._app.close()

    def _hello(self) -> None:
        """Some worker answers on the queue, and it works on this run's chain."""
        task_id = self._send(TASK_STATUS, {})
        deadline = time.monotonic() + min(STATUS_TIMEOUT, self.timeout)
        while time.monotonic() < deadline:
            if self.importer.stop.is_set():
                raise KeyboardInterrupt
            reply = self._pop(min(1.0, max(0.05, deadline - time.monotonic())))
            if reply is None or reply.get("task_id") != task_id:
                continue
            status = reply.get("status") or {}
            if status.get("chain_id") != self.job.chain_id or \
                    norm(str(status.get("accounts_index"))) != norm(self.job.accounts_index):
                raise ImporterError(
                    f"eth: import worker {status.get('worker')} works on chain id "
                    f"{status.get('chain_id')} (AccountsIndex {status.get('accounts_index')}), "
                    f"this run on chain id {self.job.chain_id} (AccountsIndex "
                    f"{self.job.accounts_index})",
                    hint="start the workers with this run's chain (--devnet DIR, or -p RPC "
                    "-r REGISTRY)")
            log.info("eth: import worker %s answers on %s (signer %s)", status.get("worker"),
                     self.describe(), status.get("signer"))
            return
        raise ImporterError(
            f"eth: no import worker answered on {self.describe()} within "
            f"{min(STATUS_TIMEOUT, self.timeout):.0f}s",
            hint="start one: `cic-seed import-worker` with this run's chain and the same "
            "CIC_IMPORT_BROKER_URL / CIC_IMPORT_QUEUE; or drop --executor celery")

    # -- sending -----------------------------------------------------------------------------
    def _dispatch(self, number: int, batch: list[UserRow], result: ImportResult) -> None:
        data = self.importer.data
        bad = {u.address: reason for u in batch if (reason := record_problem(data, u))}
        self.importer.record_failed(list(bad.items()), result)
        ready = [u for u in batch if u.address not in bad]
        if ready:
            self._launch(_Flight(number, ready))

    def _launch(self, flight: _Flight) -> None:
        keystore = self.importer.data.keystore
        users = [[u.index, u.address, not keyfile_path(keystore, u.address).exists()]
                 for u in flight.users]
        flight.task_ids.append(self._send(TASK_BATCH, {"job": self.job.to_dict(),
                                                       "batch": flight.number, "users": users}))
        flight.deadline = time.monotonic() + self.timeout
        self._flights[flight.number] = flight

    def _send(self, task: str, kwargs: dict[str, Any]) -> str:
        from kombu.exceptions import OperationalError

        app = self._app
        assert app is not None

        def send() -> str:
            try:
                sent = app.send_task(
                    task, kwargs={**kwargs, "reply_to": self.reply_key}, queue=self.queue,
                    retry=True, retry_policy={"max_retries": 2, "interval_start": 0.2,
                                              "interval_step": 0.5, "interval_max": 1.0})
            except (OperationalError, OSError) as exc:
                raise ServiceUnavailableError(f"cannot queue {task} on {self.describe()}: {exc}"
                                              ) from None
            return str(sent.id)

        return self._redo(send, f"queueing {task}")

    # -- replies -----------------------------------------------------------------------------
    def _wait(self) -> float:
        first = min(f.deadline for f in self._flights.values())
        return min(1.0, max(0.05, first - time.monotonic()))

    def _pop(self, timeout: float) -> dict[str, Any] | None:
        """The next reply of this run, waiting up to ``timeout`` seconds (None: none came)."""
        import redis

        def pop() -> Any:
            try:
                return self._redis.blpop([self.reply_key], timeout=timeout)
            except (redis.RedisError, OSError) as exc:
                raise ServiceUnavailableError(
                    f"cannot read the import replies on {redact(self.broker)}: {exc}") from None

        item = self._redo(pop, "reading replies")
        if item is None:
            return None
        try:
            reply = json.loads(item[1])
        except ValueError:
            log.warning("eth: ignored a reply that is not JSON: %r", item[1][:200])
            return None
        return reply if isinstance(reply, dict) else None

    def _handle(self, reply: dict[str, Any], result: ImportResult) -> None:
        flight = self._flights.get(int(reply.get("batch", -1)))
        if flight is None or reply.get("task_id") not in flight.task_ids:
            return  # an answer to a batch already settled (it ran twice)
        worker = reply.get("worker") or "?"
        if "error" in reply:
            error = f"import worker {worker}: {reply['error']}"
            if not reply.get("transient"):
                raise ImporterError(f"eth: {error}", hint="fix the worker, then rerun: the "
                                    "import resumes where it stopped")
            del self._flights[flight.number]
            self.importer.record_failed([(u.address, f"{error}; a rerun resumes")
                                         for u in flight.users], result)
            return
        if reply.get("needs"):
            self._provision(reply["needs"])
            self._launch(flight)
            return
        del self._flights[flight.number]
        self._settle(flight, reply, result)

    def _expire(self, result: ImportResult) -> None:
        now = time.monotonic()
        for flight in [f for f in self._flights.values() if f.deadline <= now]:
            if flight.resends < RESENDS:
                flight.resends += 1
                log.warning("eth: no reply to batch %d (task %s) within %.0fs; sending it "
                            "again", flight.number, flight.task_ids[-1], self.timeout)
                self._launch(flight)
                continue
            del self._flights[flight.number]
            ids = ", ".join(flight.task_ids[-1 - RESENDS:])
            self.importer.record_failed([(u.address, (
                f"no import worker replied to tasks {ids} on {self.describe()} within "
                f"{self.timeout:.0f}s each; is a worker running (`cic-seed import-worker`)? "
                "a rerun resumes")) for u in flight.users], result)

    def _settle(self, flight: _Flight, reply: dict[str, Any], result: ImportResult) -> None:
        importer, data = self.importer, self.importer.data
        keyfiles: dict[str, Any] = reply.get("keyfiles") or {}
        self._check_password(str(reply.get("signer")), str(reply.get("worker")), keyfiles)
        if keyfiles:  # traces first: keyfiles, raw transactions, then records and state
            data.keystore.mkdir(parents=True, exist_ok=True, mode=0o700)
            for address, doc in keyfiles.items():
                path = keyfile_path(data.keystore, address)
                if not path.exists():
                    atomic_write(path, json.dumps(doc).encode(), 0o600)
        for tx_hash, raw in (reply.get("txs") or {}).items():
            data.tx.put(tx_hash, str(raw).encode())
        by_address = {norm(u.address): u for u in flight.users}
        failed = {norm(a): str(r) for a, r in (reply.get("bad") or {}).items()}
        failed.update({norm(a): str(r) for a, r in (reply.get("failed") or {}).items()})
        found = {norm(a): by_address[norm(a)].address for a in reply.get("found") or ()
                 if norm(a) in by_address}
        sent = {norm(a): str(h) for a, h in (reply.get("sent") or {}).items()}
        confirmed = {norm(a) for a in reply.get("confirmed") or ()}
        importer.record_found(flight.users, found, result)
        importer.record_submitted([Submission(by_address[a].address, h, by_address[a].address)
                                   for a, h in sent.items() if a in by_address], result)
        importer.record_confirmed([(by_address[a], by_address[a].address) for a in confirmed
                                   if a in by_address], result)
        for a in by_address.keys() - found.keys() - confirmed - failed.keys():
            failed[a] = f"the reply of import worker {reply.get('worker')} did not mention it"
        importer.record_failed([(by_address[a].address, r) for a, r in failed.items()
                                if a in by_address], result)

    def _check_password(self, signer: str, worker: str, keyfiles: Mapping[str, Any]) -> None:
        """Keyfiles from a worker signer not seen before must open with our password."""
        if signer in self._checked or not keyfiles:
            return
        address, doc = next(iter(keyfiles.items()))
        try:
            decrypt_v3(doc, self.importer.settings.keystore_password)
        except ValueError:
            raise ImporterError(
                f"eth: import worker {worker} (signer {signer}) encrypts keyfiles with another "
                f"keystore password than this run (the keyfile of {address} does not open)",
                hint="give every worker this run's CIC_KEYSTORE_PASSWORD, then rerun") from None
        self._checked.add(signer)

    # -- worker signers ----------------------------------------------------------------------
    def _provision(self, needs: Mapping[str, Any]) -> None:
        """Make a worker's signer a writer of the AccountsIndex and give it gas, as it asked."""
        importer = self.importer
        network, client = importer.network, importer.client
        signer, index = str(needs["signer"]), importer.index
        me = client.signer.address if client.signer else ""
        if not self._redo(lambda: network.is_writer(index, signer), "reading writers"):
            owner = self._redo(lambda: client.call(index, ACCOUNTS_INDEX.fn("owner")),
                               "reading the owner")
            if norm(str(owner)) != norm(me):
                raise SignerError(
                    f"import worker signer {signer} is not a writer of the AccountsIndex "
                    f"{index}, and this run's signer {me} is not its owner ({owner})",
                    hint=f"have {owner} call addWriter({signer}), or run with the owner's key")
            client.transact(Call(index, ACCOUNTS_INDEX.encode("addWriter", signer),
                                 gas=100_000), f"AccountsIndex.addWriter({signer})")
            log.info("eth: import worker signer %s is now a writer of %s", signer, index)
        (balance,) = self._redo(lambda: client.native_balances([signer]), "reading balances")
        if balance < int(needs["wei"]):
            client.transact(Call(signer, b"", value=int(needs["topup"]), gas=21_000),
                            f"gas for import worker signer {signer}")
            log.info("eth: sent %d wei of gas to import worker signer %s", int(needs["topup"]),
                     signer)

    def _redo(self, fn: Callable[[], T], what: str) -> T:
        """``fn()``, a call to the broker (or the chain, whose client retried it already)."""
        policy = RetryPolicy(self.importer.settings.rpc_retries, stop=self.importer.stop)
        return policy.call(fn, what=f"eth: {what}", service=IMPORT_BROKER)
