"""kombu's filesystem transport for a spool directory (:mod:`.spool`): every message is written
under a temporary name and renamed into place, and taken by renaming it away, so a message is
never read half-written nor taken twice (kombu's own writes in place and moves without a
lock). Named by :data:`.spool.TRANSPORT`; kombu imports it when a spool broker is used."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from queue import Empty
from typing import Any

from kombu.transport import filesystem
from kombu.utils import json as kombu_json

from cic_seeding.custodial.spool import CLAIMED, write_atomically

#: kombu's JSON (the encoding its own filesystem transport uses for messages).
_dumps: Callable[[Any], str] = kombu_json.dumps
_loads: Callable[[bytes], Any] = kombu_json.loads
#: Seconds a worker waits for messages before it looks whether it is being stopped.
WAKE_INTERVAL = 0.2


class SpoolChannel(filesystem.Channel):
    """kombu's filesystem channel, its messages put and taken by atomic renames."""

    # kombu names the message "message" in AbstractChannel and "payload" here: either fails one
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{time.time_ns()}_{uuid.uuid4().hex}.{queue}.msg"
        write_atomically(Path(self.data_folder_out) / name, _dumps(payload).encode())

    def _get(self, queue: Any, timeout: Any = None) -> Any:
        folder = Path(self.data_folder_in)
        claimed = folder.parent / CLAIMED
        for name in sorted(os.listdir(folder)):
            if name.partition(".")[2] != f"{queue}.msg":
                continue
            mine = claimed / name
            try:
                os.rename(folder / name, mine)  # only one taker wins
            except FileNotFoundError:
                continue
            try:
                return _loads(mine.read_bytes())
            finally:
                mine.unlink()
        raise Empty()


class SpoolTransport(filesystem.Transport):
    """kombu's filesystem transport with :class:`SpoolChannel`, waiting at most
    :data:`WAKE_INTERVAL` for messages at a time: celery's loop for such transports waits 2 s,
    and would hold a worker's shutdown that long."""

    Channel = SpoolChannel

    def drain_events(self, connection: Any, timeout: Any = None, **kwargs: Any) -> Any:
        drain: Callable[..., Any] = super().drain_events
        return drain(connection, min(timeout or WAKE_INTERVAL, WAKE_INTERVAL), **kwargs)
