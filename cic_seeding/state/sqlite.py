"""The default state store: one SQLite file (``<data_dir>/state.db``) in WAL mode."""

from __future__ import annotations

import fcntl
import os
import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cic_seeding.errors import StateError
from cic_seeding.state._sql import SqlStateStore

_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")


class SqliteStateStore(SqlStateStore):
    """State in one SQLite file; several processes may use it at once (WAL, busy timeout)."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 60.0) -> None:
        super().__init__()
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None,
                                         check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._create_schema("INTEGER PRIMARY KEY AUTOINCREMENT")
        except sqlite3.Error as exc:
            raise StateError(f"cannot open the state store {self.path}: {exc}",
                             hint="check the path and its permissions, or set CIC_STATE_URL"
                             ) from None

    def describe(self) -> str:
        return str(self.path)

    def close(self) -> None:
        self._conn.close()

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        try:
            return self._conn.execute(sql, tuple(params))
        except sqlite3.Error as exc:
            raise StateError(f"state store {self.path}: {exc}") from exc

    def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        try:
            self._conn.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise StateError(f"state store {self.path}: {exc}") from exc

    def _begin(self) -> None:
        # IMMEDIATE takes the write lock up front: no deadlock when a reader turns writer.
        self._execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self._execute("COMMIT")

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        if not _NAME.match(name):
            raise ValueError(f"lock name {name!r}")
        lock_path = self.path.with_name(f"{self.path.name}.{name}.lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                raise StateError(
                    f"{name!r} is already running against {self.path} (pid {holder})",
                    hint="wait for it to finish or stop it, then run again") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)  # closing releases the lock
