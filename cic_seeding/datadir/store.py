"""Keyed stores sharded by the upper-case hex key: ``<store>/<K[0:2]>/<K[2:4]>/<K>``."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path


def normalise_key(key: str) -> str:
    key = key[2:] if key[:2] in ("0x", "0X") else key
    return key.upper()


def atomic_write(path: str | os.PathLike[str], data: bytes, mode: int | None = None, *,
                 parent_exists: bool = False) -> None:
    """Write ``data`` so a reader (or a crash) never sees half a file: under a temporary name
    beginning with ``.`` (one per process and thread), then renamed into place. ``mode``
    (default 0600) holds whatever the umask would take away.

    On strings and ``os`` calls, not ``Path`` objects: the outbox archives every signed
    transaction through here, and path objects cost as much as the write."""
    final = os.fspath(path)
    directory, _, name = final.rpartition("/")
    if not parent_exists and directory:
        os.makedirs(directory, exist_ok=True)
    tmp = f"{directory}/.{name}.tmp{os.getpid()}-{threading.get_ident()}" if directory \
        else f".{name}.tmp{os.getpid()}-{threading.get_ident()}"
    mode = 0o600 if mode is None else mode
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, final)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if exc.filename is None:  # a failed write or close names no file: name it
            raise OSError(exc.errno, exc.strerror, final) from exc
        raise
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _make_shard(directory: str) -> None:
    """Create the shard ``directory`` (``ROOT/AB/CD``) and its parent as needed: two ``mkdir``
    calls at most, where ``os.makedirs`` costs a path walk; another worker may be creating
    either at the same time."""
    try:
        os.mkdir(directory)
    except FileExistsError:
        return
    except FileNotFoundError:
        os.makedirs(directory.rpartition("/")[0], exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory)


class KeyedStore:
    """One store (src/, new/, phone/, tx/ ...) of a data directory."""

    def __init__(self, root: Path, file_mode: int = 0o644) -> None:
        self.root = root
        self.file_mode = file_mode
        self._prefix = str(root)
        self._shards: set[str] = set()  # shard directories known to exist (saves a mkdir each)

    def path(self, key: str) -> Path:
        return Path(self._name(key))  # one Path, not three joins

    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` under ``key`` atomically (:func:`atomic_write`)."""
        k = normalise_key(key)
        shard = f"{self._prefix}/{k[0:2]}/{k[2:4]}"
        if shard not in self._shards:
            _make_shard(shard)
            self._shards.add(shard)
        atomic_write(f"{shard}/{k}", data, self.file_mode, parent_exists=True)

    def _name(self, key: str) -> str:
        k = normalise_key(key)
        return f"{self._prefix}/{k[0:2]}/{k[2:4]}/{k}"

    def get(self, key: str) -> bytes:
        with open(self._name(key), "rb") as f:
            return f.read()

    def has(self, key: str) -> bool:
        return os.path.isfile(self._name(key))

    def __iter__(self) -> Iterator[str]:
        return self.keys()

    def keys(self) -> Iterator[str]:
        """Every key, in sorted order (walks the shards lazily)."""
        if not self.root.is_dir():
            return
        for a in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for b in sorted(p for p in a.iterdir() if p.is_dir()):
                for f in sorted(b.iterdir()):
                    if f.is_file() and not f.name.startswith("."):
                        yield f.name


class BulkWriter:
    """Fast writes of many new files into one store (the generator's path).

    Not atomic per file: the generator writes ``manifest.json`` last, so a directory without a
    manifest is known to be incomplete. Keeps no per-file state, so memory does not grow with
    the number of files: which of the 65,536 shard directories this writer made (or found) is
    a bitmap of 64 KB, so a new shard costs its ``mkdir`` and no failed ``open`` before it.
    """

    def __init__(self, root: Path, file_mode: int = 0o644) -> None:
        self.root = str(root)
        self.file_mode = file_mode
        self._shards = bytearray(1 << 16)  # 1: the shard directory exists

    def put(self, key: str, data: bytes) -> None:
        k = normalise_key(key)
        directory = f"{self.root}/{k[0:2]}/{k[2:4]}"
        shard = int(k[0:4], 16)
        if not self._shards[shard]:
            _make_shard(directory)
            self._shards[shard] = 1
        fd = os.open(f"{directory}/{k}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, self.file_mode)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
