"""Stopping a devnet service known only by its process id (from devnet.json)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def runs(pid: int, marker: bytes) -> bool:
    """True if process ``pid`` exists and its command line holds ``marker``."""
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"  # a zombie has exited


def stop_pid_of(pid: int, marker: bytes, timeout: float = 10.0) -> bool:
    """SIGTERM ``pid`` if it still runs a program whose command line holds ``marker`` (a
    reused pid is left alone), wait up to ``timeout`` s, then SIGKILL. Returns whether it ran."""
    if not runs(pid, marker):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _gone(pid) or not runs(pid, marker):
            return True
        time.sleep(0.02)  # polling for the exit, bounded by the deadline
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True
