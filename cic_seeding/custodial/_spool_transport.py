"""kombu's filesystem transport for a spool directory (:mod:`.spool`): every message is written
under a temporary name and renamed into place, and taken by renaming it away, so a message is
never read half-written nor taken twice (kombu's own writes in place and moves without a
lock). Its exchange tables are replaced whole the same way, under a lock file, so a reader never
sees one empty (kombu's creates the file before it locks it: a publisher reading it then failed,
and a queue bound then could be lost). Named by :data:`.spool.TRANSPORT`; kombu imports it when
a spool broker is used."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from queue import Empty
from typing import Any

from kombu.transport import filesystem, virtual
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

    def get_table(self, exchange: Any) -> list[Any]:
        try:
            table = _loads(self._table_file(exchange).read_bytes())
        except FileNotFoundError:
            return []
        return [filesystem.exchange_queue_t(*q) for q in table]

    def queue_bind(self, queue: Any, exchange: Any = None, routing_key: Any = "",
                   arguments: Any = None, **kwargs: Any) -> None:
        """Bind as kombu does, and make sure the spool's table has the binding before this
        returns: kombu's filesystem transport keeps one broker state per process and skips the
        file when that state has the binding already, so a second connection of the process
        could publish before the first had written the table, and its messages went nowhere."""
        bind: Callable[..., None] = super().queue_bind
        bind(queue, exchange, routing_key, arguments, **kwargs)
        exchange = exchange or "amq.direct"
        typeof: Callable[[Any], Any] = self.typeof
        self._queue_bind(exchange, *typeof(exchange).prepare_bind(
            queue, exchange, routing_key, arguments))

    def _queue_bind(self, exchange: Any, routing_key: Any, pattern: Any, queue: Any) -> None:
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        with self._tables_locked():
            table = self.get_table(exchange)
            if entry not in table:
                self._write_table(exchange, [entry, *table])

    def _delete(self, queue: Any, exchange: Any, routing_key: Any, pattern: Any,
                *args: Any, **kwargs: Any) -> None:
        delete: Callable[..., None] = virtual.Channel._delete  # kombu's, not the file's
        delete(self, queue, exchange, routing_key, pattern, *args, **kwargs)
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        with self._tables_locked():
            table = self.get_table(exchange)
            if entry in table:
                self._write_table(exchange, [q for q in table if q != entry])

    def _write_table(self, exchange: Any, table: list[Any]) -> None:
        write_atomically(self._table_file(exchange), _dumps(table).encode())

    def _table_file(self, exchange: Any) -> Path:
        name: Callable[[Any], Path] = self._exchange_file  # refuses names outside the folder
        return name(exchange)

    @contextlib.contextmanager
    def _tables_locked(self) -> Iterator[None]:
        """Hold the spool's lock on its exchange tables (between processes and threads: each
        holder opens the lock file itself)."""
        Path(self.control_folder).mkdir(mode=0o700, exist_ok=True)
        fd = os.open(Path(self.control_folder) / ".tables.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


class SpoolTransport(filesystem.Transport):
    """kombu's filesystem transport with :class:`SpoolChannel`, waiting at most
    :data:`WAKE_INTERVAL` for messages at a time: celery's loop for such transports waits 2 s,
    and would hold a worker's shutdown that long."""

    Channel = SpoolChannel

    def drain_events(self, connection: Any, timeout: Any = None, **kwargs: Any) -> Any:
        drain: Callable[..., Any] = super().drain_events
        return drain(connection, min(timeout or WAKE_INTERVAL, WAKE_INTERVAL), **kwargs)
