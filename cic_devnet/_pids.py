"""Processes known only by their id (from devnet.json): is it still ours, stop it, wait for it.

Everything goes through psutil, so it reads the same on Linux, macOS and the BSDs. Signals go
to the :class:`psutil.Process` that was looked at, which checks it is still the same process
(by its creation time), so a pid the OS reused meanwhile is never signalled.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psutil

from cic_seeding.errors import ServiceError

_ENDED = (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)


def live(pid: int) -> psutil.Process | None:
    """Process ``pid`` while it runs, else None. A zombie counts as ended, unless other
    threads of it still run: a leader that called exit shows as a zombie while its other
    threads wind down (anvil exits from a worker thread), holding its port until the last one
    is gone."""
    if pid <= 0:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() in _ENDED and proc.num_threads() <= 1:
            return None
    except psutil.NoSuchProcess:  # ZombieProcess too: the platform cannot tell more
        return None
    except psutil.AccessDenied:
        pass  # another user's process: it runs, though we may not read all of it
    return proc


def program_name(proc: psutil.Process) -> str | None:
    """Program name (argv[0]'s basename) of ``proc``, None once it has ended, and
    ``"(unreadable)"`` for another user's. Right after exec (and for a zombie leader whose
    threads still run) the command line may be empty: the kernel's name then."""
    try:
        argv = proc.cmdline()
        return Path(argv[0]).name if argv and argv[0] else proc.name()
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:
        return "(unreadable)"


def holds(proc: psutil.Process, marker: str) -> bool:
    """True if ``proc``'s command line holds ``marker`` (False once it has ended)."""
    try:
        return marker in " ".join(proc.cmdline())
    except psutil.Error:
        return False


def runs(pid: int, marker: str) -> bool:
    """True if process ``pid`` runs and its command line holds ``marker``."""
    proc = live(pid)
    return proc is not None and holds(proc, marker)


def running(proc: psutil.Process) -> bool:
    """True until ``proc`` -- this very process, not a later one given its pid -- has ended
    (a zombie counts as ended, as in :func:`live`). Unlike :func:`runs` it does not read the
    command line, which a process that is exiting no longer has."""
    try:
        if not proc.is_running():
            return False
    except psutil.Error:
        return False
    return live(proc.pid) is not None


def wait_gone(pid: int, still: Callable[[int], bool], timeout: float) -> bool:
    """Wait up to ``timeout`` s while ``still(pid)`` holds; returns whether it stopped holding."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while still(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)  # poll back-off, bounded by the deadline
        delay = min(delay * 2, 0.1)
    return True


def terminate(proc: psutil.Process, still: Callable[[int], bool], timeout: float,
              what: str) -> bool:
    """SIGTERM ``proc``, wait up to ``timeout`` s while ``still(pid)`` holds, then SIGKILL.
    Returns whether SIGKILL was needed. Raises :class:`ServiceError` when the OS refuses a
    signal or the process survives SIGKILL by 5 s."""
    try:
        proc.terminate()
        if wait_gone(proc.pid, still, timeout):
            return False
        proc.kill()
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        raise ServiceError(f"not allowed to signal {what} (pid {proc.pid})",
                           hint="it belongs to another user; stop it as that user") from None
    if not wait_gone(proc.pid, still, 5.0):
        raise ServiceError(f"{what} (pid {proc.pid}) survived SIGKILL",
                           hint=f"check `ps -p {proc.pid}`")
    return True


def stop_pid_of(pid: int, marker: str, timeout: float = 10.0) -> bool:
    """SIGTERM ``pid`` if it still runs a program whose command line holds ``marker`` (a
    reused pid is left alone), wait up to ``timeout`` s, then SIGKILL, and return once it has
    ended. Returns whether it ran."""
    proc = live(pid)
    if proc is None or not holds(proc, marker):
        return False
    terminate(proc, lambda _: running(proc), timeout, marker)
    return True
