"""The client of a custodial engine reached through its broker (Redis): tasks sent by name,
replies on a callback channel, the result backend as a fallback (see :mod:`.api`)."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cic_seeding.custodial.api import (
    TASK_CREATE,
    TASK_STATUS,
    Reply,
    parse_reply,
    redact,
    task_id_of,
)
from cic_seeding.errors import (
    ConfigError,
    CustodialError,
    CustodialReplyError,
    CustodialTimeoutError,
    CustodialUnavailableError,
)

log = logging.getLogger(__name__)

POLL_RESULTS = 1.0


def _from_result_meta(task_id: str, raw: bytes) -> Reply | None:
    """A Reply from Celery's stored task meta, None while the task has not finished."""
    meta = json.loads(raw)
    state, result = meta.get("status"), meta.get("result")
    if state == "SUCCESS":
        if not isinstance(result, dict):
            raise CustodialReplyError(f"task {task_id} returned {str(result)[:200]!r}, not an "
                                      "object")
        return Reply(task_id, "", True, result)
    if state in ("FAILURE", "REVOKED"):
        if isinstance(result, dict):
            message = result.get("exc_message")
            text = " ".join(map(str, message)) if isinstance(message, list) else str(message)
            return Reply(task_id, "", False, error=f"{result.get('exc_type', state)}: {text}")
        return Reply(task_id, "", False, error=f"{state}: {result}")
    return None


class CustodialClient:
    """Sends requests to the engine and collects their replies; one per importer or check.

    :meth:`send` puts a whole batch of requests on the queue at once; :meth:`collect` gathers
    the replies of any of them (replies of other batches are kept for later), so many
    requests are in flight at a time. Not thread-safe: use it from one thread.
    """

    def __init__(self, broker_url: str, queue: str, *, timeout: float = 120.0,
                 connect_timeout: float = 3.0) -> None:
        from celery import Celery

        self.broker_url = broker_url
        self.queue = queue
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.channel = f"cic_custodial.reply.{uuid.uuid4().hex}"
        self._app = Celery("cic_custodial_client", broker=broker_url, backend=broker_url,
                           set_as_current=False)
        self._app.conf.update(
            task_serializer="json", accept_content=["json"], result_serializer="json",
            broker_connection_timeout=connect_timeout, broker_connection_retry=False,
            redis_socket_connect_timeout=connect_timeout, redis_socket_timeout=10)
        self._redis: Any = None
        self._pubsub: Any = None
        self._replies: dict[str, Reply] = {}
        self._broken: dict[str, CustodialReplyError] = {}
        self._sent: dict[str, float] = {}
        self._last_poll = 0.0

    def describe(self) -> str:
        return f"queue {self.queue!r} on {redact(self.broker_url)}"

    # -- connection --------------------------------------------------------------------------
    def open(self) -> None:
        """Connect to Redis and subscribe to the reply channel (idempotent)."""
        if self._pubsub is not None:
            return
        import redis

        try:
            self._redis = redis.Redis.from_url(self.broker_url,
                                               socket_connect_timeout=self.connect_timeout,
                                               socket_timeout=10)
            self._redis.ping()
            self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            self._pubsub.subscribe(self.channel)
        except (redis.RedisError, OSError, ValueError) as exc:
            self._pubsub = None
            raise CustodialUnavailableError(
                f"cannot reach the custodial engine's broker {redact(self.broker_url)}: {exc}",
                hint="check custodial_broker_url (CIC_CUSTODIAL_BROKER_URL) and that Redis "
                "runs; a devnet starts an engine with `cic-seed devnet up --custodial`"
            ) from None

    def close(self) -> None:
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception as exc:  # closing a broken connection: nothing left to do
                log.debug("closing the reply subscription: %s", exc)
            self._pubsub = None
        if self._redis is not None:
            self._redis.close()
            self._redis = None
        self._app.close()

    # -- requests ----------------------------------------------------------------------------
    def send(self, task: str, requests: Sequence[Mapping[str, Any]]) -> list[str]:
        """Queue one ``task`` per keyword-argument mapping; returns their task ids."""
        self.open()
        from kombu.exceptions import OperationalError

        ids = []
        try:
            with self._app.producer_or_acquire() as producer:
                for kwargs in requests:
                    result = self._app.send_task(
                        task, kwargs={**kwargs, "callback": self.channel}, queue=self.queue,
                        producer=producer, retry=True,
                        retry_policy={"max_retries": 3, "interval_start": 0.2,
                                      "interval_step": 0.5, "interval_max": 1.0})
                    self._sent[result.id] = time.monotonic()
                    ids.append(result.id)
        except (OperationalError, OSError) as exc:
            raise CustodialUnavailableError(
                f"cannot queue {task} on {self.describe()}: {exc}",
                hint="is Redis running? a rerun resumes") from None
        return ids

    def sent_at(self, task_id: str) -> float:
        """When ``task_id`` was sent (monotonic clock)."""
        return self._sent.get(task_id, time.monotonic())

    def collect(self, task_ids: Iterable[str], deadline: float,
                stop: threading.Event | None = None) -> dict[str, Reply]:
        """Replies of ``task_ids`` that come before ``deadline`` (monotonic clock).

        A task id missing from the answer got no reply in time; one whose reply could not be
        understood is left out here and reported by :meth:`reply_error`. ``stop`` set while
        waiting raises KeyboardInterrupt (the caller's run is being stopped).
        """
        wanted = set(task_ids)
        while True:
            if stop is not None and stop.is_set():
                raise KeyboardInterrupt
            missing = [t for t in wanted if t not in self._replies and t not in self._broken]
            if not missing:
                break
            now = time.monotonic()
            if now >= deadline:
                break
            if now - self._last_poll >= POLL_RESULTS:
                self._poll_results(missing)
                continue
            self._listen(min(deadline - now, POLL_RESULTS - (now - self._last_poll), 0.5))
        return {t: self._replies[t] for t in wanted if t in self._replies}

    def reply_error(self, task_id: str) -> CustodialReplyError | None:
        """The error of a reply to ``task_id`` that could not be understood, if one came."""
        return self._broken.get(task_id)

    def forget(self, task_ids: Iterable[str]) -> None:
        """Drop what is kept about ``task_ids`` (their replies have been used), here and in
        the result backend."""
        import redis

        ids = list(task_ids)
        for t in ids:
            self._replies.pop(t, None)
            self._broken.pop(t, None)
            self._sent.pop(t, None)
        if ids and self._redis is not None:
            try:
                self._redis.delete(*[self._app.backend.get_key_for_task(t) for t in ids])
            except (redis.RedisError, OSError) as exc:  # they expire anyway
                log.debug("results not deleted: %s", exc)

    def gather(self, task: str, requests: Sequence[Mapping[str, Any]], task_ids: Sequence[str],
               *, since: float, timeout: float, stop: threading.Event | None = None
               ) -> tuple[list[list[str]], dict[str, Reply]]:
        """Replies to ``requests``, sent as ``task_ids`` at ``since`` (monotonic clock), by
        ``since + timeout`` at most; returns the task ids asked per request, and the replies.

        A request without a reply (or with a transient error) after half the timeout is sent
        once more: it was lost on the way (Redis restarted, a worker died holding it), and
        every task of the engine answers a repeated request the same way.
        """
        asked = [[t] for t in task_ids]
        replies = self.collect(task_ids, since + timeout / 2, stop)
        silent = [i for i, t in enumerate(task_ids) if self.reply_error(t) is None and (
            t not in replies or (not replies[t].ok and replies[t].transient))]
        if silent:
            log.info("no reply yet from the custodial engine to %d %s requests; asking again",
                     len(silent), task)
            for i, again in zip(silent, self.send(task, [requests[i] for i in silent]),
                                strict=True):
                asked[i].append(again)
            replies.update(self.collect([t for i in silent for t in asked[i]],
                                        since + timeout, stop))
        return asked, replies

    @staticmethod
    def best(task_ids: Sequence[str], replies: Mapping[str, Reply]) -> Reply | None:
        """The reply to one request asked as ``task_ids``: a successful one if any came."""
        answered = [replies[t] for t in task_ids if t in replies]
        return next((r for r in answered if r.ok), answered[-1] if answered else None)

    def call(self, task: str, kwargs: Mapping[str, Any], *, timeout: float | None = None,
             what: str = "") -> dict[str, Any]:
        """One request and its result; CustodialTimeoutError / CustodialError otherwise."""
        (task_id,) = self.send(task, [kwargs])
        wait = self.timeout if timeout is None else timeout
        replies = self.collect([task_id], time.monotonic() + wait)
        broken = self.reply_error(task_id)
        self.forget([task_id])
        if broken is not None:
            raise broken
        reply = replies.get(task_id)
        if reply is None:
            raise self.timeout_error(task, task_id, wait, what=what)
        if not reply.ok:
            raise CustodialError(f"the custodial engine failed {task}"
                                 f"{' for ' + what if what else ''} (task {task_id}): "
                                 f"{reply.error}")
        return reply.result

    def timeout_error(self, task: str, task_id: str, waited: float, *, user: str = "",
                      what: str = "", others: int = 0) -> CustodialTimeoutError:
        """The error for a request (``task_id``: one id or several, comma-separated) whose
        reply never came; it names the user (and how many ``others`` went unanswered too) or
        what was asked, and the task ids."""
        more = f" (and {others} more users)" if others else ""
        about = f" for user {user}{more}" if user else (f" about {what}" if what else "")
        tasks = "tasks" if "," in task_id else "task"
        again = (" and the engine answers a repeated request with the same account"
                 if task == TASK_CREATE else "")
        return CustodialTimeoutError(
            f"no reply from the custodial engine{about} to {tasks} {task_id} ({task}) within "
            f"{waited:.0f}s", task_id=task_id, user=user,
            hint=f"is a worker consuming {self.describe()}? (`python -m cic_devnet.custodial "
            "worker` starts one; a devnet whose workers died: `cic-seed devnet down`, then "
            f"`up --custodial`); a rerun asks again{again}")

    # -- replies -----------------------------------------------------------------------------
    def _listen(self, wait: float) -> None:
        import redis

        if not self._pubsub.subscribed and not self._subscribe():
            time.sleep(min(wait, 0.2))  # Redis is still away: wait a little, then try again
            return
        try:
            message = self._pubsub.get_message(timeout=max(wait, 0.0))
        except (redis.RedisError, OSError) as exc:
            # Redis went away: replies published meanwhile are lost, so they are looked up
            # in the result backend once it is back
            log.warning("custodial reply channel lost (%s); reconnecting", exc)
            self._subscribe()
            return
        if message is None or message.get("type") != "message":
            return
        self._take(message["data"])

    def _take(self, data: Any) -> None:
        """Keep one reply message (every transport's): a reply, or what is wrong with the reply
        of the task it names; a message naming no task is logged and dropped."""
        try:
            reply = parse_reply(data)
        except CustodialReplyError as exc:
            task_id = task_id_of(data)
            if task_id is not None:
                self._broken[task_id] = exc
            else:
                log.warning("ignored a message on %s: %s", self.channel, exc)
            return
        self._replies[reply.task_id] = reply

    def _subscribe(self) -> bool:
        """A fresh subscription to the reply channel; False while Redis does not answer."""
        import redis

        try:
            self._pubsub.close()
        except Exception as exc:  # the old connection is broken anyway
            log.debug("closing a broken subscription: %s", exc)
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            self._pubsub.subscribe(self.channel)
        except (redis.RedisError, OSError):
            return False
        self._last_poll = 0.0  # replies may have been missed: look in the result backend
        return True

    def _poll_results(self, task_ids: Sequence[str]) -> None:
        import redis

        self._last_poll = time.monotonic()
        backend = self._app.backend
        try:
            raws = self._redis.mget([backend.get_key_for_task(t) for t in task_ids])
        except (redis.RedisError, OSError) as exc:
            log.debug("result backend unreachable: %s", exc)
            return
        for task_id, raw in zip(task_ids, raws, strict=True):
            self._take_result(task_id, raw)

    def _take_result(self, task_id: str, raw: bytes | None) -> None:
        """Keep the reply in a result-backend entry (None: no result yet)."""
        if raw is None:
            return
        try:
            reply = _from_result_meta(task_id, raw)
        except (CustodialReplyError, ValueError) as exc:
            self._broken[task_id] = CustodialReplyError(
                f"task {task_id}: unreadable result: {exc}")
            return
        if reply is not None:
            self._replies.setdefault(task_id, reply)


def engine_status(client: CustodialClient, accounts_index: str, *, timeout: float
                  ) -> dict[str, Any]:
    """The engine's status, once it is known to register accounts in ``accounts_index`` (this
    run's network); ConfigError naming both indexes if it registers them elsewhere."""
    status = client.call(TASK_STATUS, {}, timeout=timeout, what="its status")
    theirs = str(status.get("accounts_index", ""))
    if theirs.lower() != accounts_index.lower():
        raise ConfigError(
            f"the custodial engine on {client.describe()} registers accounts in the "
            f"AccountsIndex {theirs or '(none)'}, but this network's is {accounts_index}",
            hint="point the engine and this run at the same registry")
    return status
