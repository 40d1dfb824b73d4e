"""Nonce allocation for one signing key, safe across threads and processes.

``seed`` and ``sync`` (or two of either) may run at once with the same key. Each send goes
through :meth:`NonceAllocator.reserve`, which holds an exclusive lock for that signer on this
machine (an ``fcntl`` lock file, released by the kernel if the holder dies) while the caller
signs and broadcasts one batch::

    with allocator.reserve() as r:
        raws = [sign(tx, nonce=r.next()) for tx in batch]
        results = send_batch(raws)     # still inside the lock

Inside the lock the first nonce is the node's *pending* transaction count, so the sequence
repairs itself: a nonce whose transaction was rejected or dropped is handed out again, and a
"nonce too low" (some other sender used the key) is answered by retrying with a fresh
reservation. A transaction queued behind a gap that nothing fills any more is unblocked with
:meth:`NonceAllocator.fill_gaps`.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

NONCE_TOO_LOW = re.compile(r"nonce too low|nonce has already been used|"
                           r"replacement transaction underpriced|NonceTooLow|OldNonce",
                           re.IGNORECASE)
# The node already holds this very transaction: that is success, never a reason to re-sign.
ALREADY_KNOWN = re.compile(r"already known|already imported|known transaction",
                           re.IGNORECASE)


def is_nonce_error(message: str) -> bool:
    """True if a node's error says the nonce was already used by some transaction."""
    return bool(NONCE_TOO_LOW.search(message))


def is_already_known(message: str) -> bool:
    """True if a node's error says it already has this exact transaction."""
    return bool(ALREADY_KNOWN.search(message))


def default_lock_dir() -> Path:
    """Machine-wide, so every data directory using one key shares the lock."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / "cic-seeding-nonces"


class Reservation:
    """Consecutive nonces handed out inside one held lock."""

    def __init__(self, first: int) -> None:
        self.first = first
        self.nonces: list[int] = []

    def next(self) -> int:
        nonce = self.first + len(self.nonces)
        self.nonces.append(nonce)
        return nonce


class NonceAllocator:
    """One per signer address and chain; share the instance between threads of a process.

    ``pending_nonce`` returns the node's ``eth_getTransactionCount(address, "pending")``.
    """

    def __init__(self, address: str, chain_id: int | str, pending_nonce: Callable[[], int],
                 lock_dir: str | Path | None = None) -> None:
        """``chain_id`` names the chain in the lock file's name: give something that tells
        two chains with one id apart (two local devnets), e.g. ``"8996-<genesis hash>"``."""
        self.address = address.lower()
        self.chain_id = chain_id
        self._pending_nonce = pending_nonce
        directory = Path(lock_dir) if lock_dir else default_lock_dir()
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.lock_path = directory / f"{chain_id}-{self.address}.lock"
        self._thread_lock = threading.Lock()

    @contextmanager
    def _locked(self) -> Iterator[int]:
        with self._thread_lock:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield fd
            finally:
                os.close(fd)  # releases the flock

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the signer's lock; the caller reads the node's counts and picks nonces itself
        (the outbox, which also knows the nonces its recorded transactions hold)."""
        with self._locked():
            yield

    @contextmanager
    def reserve(self) -> Iterator[Reservation]:
        """Hold the signer's lock while the caller signs and broadcasts with ``r.next()``.

        Broadcast inside the block: the next holder reads the node's pending count, which must
        include every transaction accepted here. The node is the one source of truth (no local
        high-water mark), so a dropped transaction's nonce is simply handed out again.
        """
        with self._locked():
            yield Reservation(self._pending_nonce())

    def fill_gaps(self, up_to: int, send_filler: Callable[[int], bool]) -> int:
        """Send ``send_filler(nonce)`` for every nonce from the pending count below ``up_to``.

        For transactions stuck behind a nonce that will never be used (its transaction was
        rejected and nothing else followed). Returns how many fillers were accepted.
        """
        sent = 0
        with self._locked():
            nonce = self._pending_nonce()
            while nonce < up_to:
                if send_filler(nonce):
                    sent += 1
                nonce += 1
        return sent
