"""The wires of a custodial engine that runs without Redis in a process of its own: files.

An engine on SQLite needs no server for its state; what it needs Redis for is the way in (the
Celery broker) and the way out (the reply channels). When it must outlive the process that
started it (``cic-seed demo --keep``), neither can be in memory (:mod:`.local`), so both are
files in one directory, the *spool*, named by the broker URL
``filesystem://localhost/ABS/DIR``:

* ``DIR/queue/`` -- task messages: kombu's filesystem transport (:mod:`._spool_transport`),
  each message written under a temporary name and renamed into place, and taken by renaming
  it away, so a half-written message is never read and no message is taken twice;
* ``DIR/control/`` -- kombu's exchange tables;
* ``DIR/replies/<channel>/<task id>.json`` -- replies, one file each, written the same way
  (:class:`SpoolPublisher`); a client subscribes by making its channel's directory and
  unsubscribes by removing it, so, as on Redis, a reply nobody listens for is dropped.

A reply is a file until its client reads it, so none is lost to a client that was busy;
there is no result backend (Celery's is disabled on both sides). Tasks and replies are what
they are on Redis: the engine, the importer, the syncer and the verifier do not change.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cic_seeding.custodial.api import task_id_of
from cic_seeding.custodial.client import CustodialClient
from cic_seeding.datadir.store import atomic_write
from cic_seeding.errors import CustodialUnavailableError

SCHEME = "filesystem"
#: Seconds between the engine's looks into its empty queue (it may idle for hours: about 1 %
#: of a core at 0.05 s) and a client's into its empty reply directory (only while it waits).
QUEUE_POLL, REPLY_POLL = 0.05, 0.02
#: Where a message goes while it is being read (the rename that takes it).
CLAIMED = "claimed"
#: kombu's filesystem transport with atomic put and take (:mod:`._spool_transport`).
TRANSPORT = "cic_seeding.custodial._spool_transport:SpoolTransport"


def is_spool(broker_url: str) -> bool:
    """Whether ``broker_url`` names a spool directory (``filesystem://localhost/DIR``)."""
    return broker_url.startswith(f"{SCHEME}://")


def spool_url(directory: str | Path) -> str:
    """The broker URL of the spool ``directory`` (made absolute)."""
    return f"{SCHEME}://localhost{Path(directory).resolve()}"


def spool_dir(broker_url: str) -> Path:
    """The directory ``broker_url`` (``filesystem://localhost/DIR`` or ``filesystem:///DIR``)
    names."""
    parts = urlsplit(broker_url)
    if parts.scheme != SCHEME or parts.netloc not in ("", "localhost") or not parts.path:
        raise ValueError(f"{broker_url!r} is not a spool URL "
                         "(filesystem://localhost/ABSOLUTE/DIR)")
    return Path(parts.path)


def make_spool(directory: str | Path) -> str:
    """Create the spool ``directory`` afresh (owner only: tasks carry addresses and amounts)
    and its folders; returns its broker URL. What an earlier engine left there (requests and
    replies of clients that are gone) is removed."""
    root = Path(directory).resolve()
    shutil.rmtree(root, ignore_errors=True)
    for sub in ("", "queue", "control", "replies", CLAIMED):
        (root / sub).mkdir(mode=0o700, exist_ok=True)
    return spool_url(root)


def celery_settings(broker_url: str) -> dict[str, Any]:
    """The Celery configuration of an app on the spool ``broker_url`` (engine or client)."""
    root = spool_dir(broker_url)
    return {"broker_transport": TRANSPORT,
            "broker_transport_options": {
                "data_folder_in": str(root / "queue"), "data_folder_out": str(root / "queue"),
                "control_folder": str(root / "control"), "polling_interval": QUEUE_POLL},
            "result_backend": "disabled", "worker_enable_remote_control": False}


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``path`` (mode 0600) so that a reader sees all of ``data`` or no file
    (:func:`~cic_seeding.datadir.store.atomic_write`: its temporary name, beginning with
    ``.``, is one no reader takes)."""
    atomic_write(path, data, 0o600, parent_exists=True)


class SpoolPublisher:
    """The engine's side of the reply channels: ``publish`` as Redis pub/sub has it."""

    def __init__(self, broker_url: str) -> None:
        self.replies = spool_dir(broker_url) / "replies"

    def publish(self, channel: str, message: str) -> int:
        """Leave ``message`` for the subscriber of ``channel``; how many got it (0 or 1)."""
        if "/" in channel or channel.startswith("."):
            return 0  # not a channel name a client makes
        inbox = self.replies / channel
        if not inbox.is_dir():
            return 0
        task_id = task_id_of(message) or uuid.uuid4().hex
        try:
            write_atomically(inbox / f"{task_id}.json", message.encode())
        except FileNotFoundError:  # unsubscribed meanwhile
            return 0
        return 1


class SpoolClient(CustodialClient):
    """A :class:`CustodialClient` of an engine on a spool directory (see the module
    documentation): the same requests and replies, carried in files."""

    def __init__(self, broker_url: str, queue: str, *, timeout: float = 120.0,
                 connect_timeout: float = 3.0) -> None:
        super().__init__(broker_url, queue, timeout=timeout, connect_timeout=connect_timeout)
        self.root = spool_dir(broker_url)
        self._app.conf.update(celery_settings(broker_url))
        self._inbox: Path | None = None

    def describe(self) -> str:
        return f"queue {self.queue!r} in the spool directory {self.root}"

    def open(self) -> None:
        """Subscribe (make the reply directory); CustodialUnavailableError when there is no
        spool directory."""
        if self._inbox is not None:
            return
        if not (self.root / "queue").is_dir():
            raise CustodialUnavailableError(
                f"the custodial engine's spool directory {self.root} does not exist",
                hint="is its devnet running? (`cic-seed demo --custodial --keep` starts one)")
        inbox = self.root / "replies" / self.channel
        inbox.mkdir(mode=0o700)
        self._inbox = inbox

    def close(self) -> None:
        if self._inbox is not None:
            shutil.rmtree(self._inbox, ignore_errors=True)
            self._inbox = None
        self._app.close()

    def forget(self, task_ids: Iterable[str]) -> None:
        for t in list(task_ids):
            self._replies.pop(t, None)
            self._broken.pop(t, None)
            self._sent.pop(t, None)

    def _listen(self, wait: float) -> None:
        if self._inbox is None:
            self.open()
        assert self._inbox is not None
        deadline = time.monotonic() + max(wait, 0.0)
        while True:
            names = [n for n in os.listdir(self._inbox) if n.endswith(".json")]
            for name in names:
                path = self._inbox / name
                with contextlib.suppress(FileNotFoundError):
                    self._take(path.read_bytes())
                    path.unlink()
            if names or time.monotonic() >= deadline:
                return
            time.sleep(min(REPLY_POLL, max(deadline - time.monotonic(), 0.0)))

    def _poll_results(self, task_ids: Sequence[str]) -> None:
        """Nothing to poll: replies are files that wait for this client."""
        self._last_poll = time.monotonic()
