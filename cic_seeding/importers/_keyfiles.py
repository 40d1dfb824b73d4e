"""v3 keyfiles of sovereign users under ``keystore/``, made in a process pool.

A user's key is derived again from the manifest seed and index (never read from disk). Files are
``keystore/<address lower-case, no 0x>.json``, mode 0600, written atomically; an existing file
is kept, so a rerun only makes the missing ones. Every file has its own IV; the files of one
chunk share one salt, so the password is stretched (scrypt) once per chunk, not once per file
(they share the password: see :func:`~cic_seeding.chain.keyfile.encrypt_v3`).
:meth:`KeyfileWriter.make` returns the documents instead of writing them (an import worker on
another machine sends them back to the dispatcher, which owns the data directory).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cic_seeding.chain.keyfile import KdfKey, decrypt_v3, encrypt_v3, kdf_key
from cic_seeding.datadir.layout import keyfile_path
from cic_seeding.datadir.store import atomic_write
from cic_seeding.errors import ConfigError
from cic_seeding.generate.keys import address_of, derive_private_key

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

KDF_N = {"light": 2**8, "production": 2**18}


def scrypt_n(kdf: str) -> int:
    try:
        return KDF_N[kdf]
    except KeyError:
        raise ConfigError(f"keystore_kdf must be one of {', '.join(KDF_N)}, got {kdf!r}"
                          ) from None


def keyfile_doc(seed: int, index: int, address: str, password: str, n: int,
                stretched: KdfKey | None = None) -> dict[str, Any] | str:
    """User ``index``'s v3 keyfile document, or why its key does not match ``address``
    (``stretched``: the password's scrypt key to share with other files)."""
    key = derive_private_key(seed, index)
    if address_of(key).lower() != address.lower():
        return (f"users.csv says index {index} is {address}, but the manifest seed "
                f"derives {address_of(key)}: the data directory is inconsistent")
    return encrypt_v3(key, password, n=n, address=address, key=stretched)


def _write_chunk(keystore: str, seed: int, users: Sequence[tuple[int, str]], password: str,
                 n: int) -> dict[str, str]:
    """Write missing keyfiles; ``{address: reason}`` for users whose key does not match."""
    bad: dict[str, str] = {}
    stretched: KdfKey | None = None
    for index, address in users:
        path = keyfile_path(Path(keystore), address)
        if path.exists():
            continue
        stretched = stretched or kdf_key(password, n)
        doc = keyfile_doc(seed, index, address, password, n, stretched)
        if isinstance(doc, str):
            bad[address] = doc
            continue
        atomic_write(path, json.dumps(doc).encode(), 0o600)
    return bad


def _make_chunk(seed: int, users: Sequence[tuple[int, str]], password: str, n: int
                ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    docs: dict[str, dict[str, Any]] = {}
    bad: dict[str, str] = {}
    stretched = kdf_key(password, n) if users else None
    for index, address in users:
        doc = keyfile_doc(seed, index, address, password, n, stretched)
        if isinstance(doc, str):
            bad[address] = doc
        else:
            docs[address] = doc
    return docs, bad


def _exit_with_parent() -> None:
    """Pool initializer: a worker whose parent died (kill -9) exits instead of lingering."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)  # polling the parent pid; nothing else to wait on
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class KeyfileWriter:
    """Writes keyfiles for batches of users on ``workers`` processes (0: one per core)."""

    def __init__(self, keystore: Path, seed: int, password: str, kdf: str, workers: int = 0
                 ) -> None:
        self.keystore = keystore
        self.seed = seed
        self.password = password
        self.n = scrypt_n(kdf)
        self.workers = workers or os.cpu_count() or 1
        self._pool: ProcessPoolExecutor | None = None
        self._pool_lock = threading.Lock()  # an import worker makes two batches at once

    def check_password(self) -> None:
        """ConfigError if the password does not open a keyfile an earlier run wrote here: a
        rerun with another password would leave a keystore no one password opens."""
        try:
            with os.scandir(self.keystore) as entries:
                first = next((e.path for e in entries if e.name.endswith(".json")
                              and e.is_file()), None)
        except FileNotFoundError:
            return
        if first is None:
            return
        try:
            doc = json.loads(Path(first).read_bytes())
            decrypt_v3(doc, self.password)
        except ValueError as exc:
            if "MAC mismatch" not in str(exc):
                return  # a corrupt file is that user's problem (verify's local_key names it)
            raise ConfigError(
                f"the keystore password does not open {first}, written by an earlier run: "
                "this run would encrypt its users' keys under another password",
                hint="give the password the earlier runs used (keystore_password, "
                     "CIC_KEYSTORE_PASSWORD)") from None
        except (OSError, KeyError, TypeError):
            return

    def write(self, users: Sequence[tuple[int, str]]) -> dict[str, str]:
        """Write the missing keyfiles of ``users``; ``{address: reason}`` of those refused."""
        self.keystore.mkdir(parents=True, exist_ok=True, mode=0o700)
        if len(users) < 8 or self.workers == 1:
            return _write_chunk(str(self.keystore), self.seed, users, self.password, self.n)
        bad: dict[str, str] = {}
        for f in self._spread(_write_chunk, (str(self.keystore), self.seed), users, self.n):
            bad.update(f.result())
        return bad

    def make(self, users: Sequence[tuple[int, str]], *, seed: int | None = None,
             kdf: str | None = None) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """The keyfile documents of ``users`` (nothing written), and ``{address: reason}`` of
        those refused. ``seed`` and ``kdf`` override the writer's (a worker serves many runs)."""
        seed = self.seed if seed is None else seed
        n = self.n if kdf is None else scrypt_n(kdf)
        if len(users) < 8 or self.workers == 1:
            return _make_chunk(seed, users, self.password, n)
        docs: dict[str, dict[str, Any]] = {}
        bad: dict[str, str] = {}
        for f in self._spread(_make_chunk, (seed,), users, n):
            made, refused = f.result()
            docs.update(made)
            bad.update(refused)
        return docs, bad

    def _spread(self, fn: Callable[..., Any], head: tuple[Any, ...],
                users: Sequence[tuple[int, str]], n: int) -> list[Future[Any]]:
        """``fn(*head, chunk, password, n)`` on the pool, one chunk of users per process."""
        with self._pool_lock:
            if self._pool is None:
                # imported here: multiprocessing costs a verify that decrypts nothing ~8 ms
                from concurrent.futures import ProcessPoolExecutor

                self._pool = ProcessPoolExecutor(self.workers, initializer=_exit_with_parent)
            pool = self._pool
        step = max(1, -(-len(users) // self.workers))
        return [pool.submit(fn, *head, list(users[i:i + step]), self.password, n)
                for i in range(0, len(users), step)]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
