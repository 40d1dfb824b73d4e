"""What the devnet's HTTP servers (metadata, USSD) share as child processes.

A server is ``python -m <module>`` that reads its secret from stdin, binds 127.0.0.1, prints one
ready line ``{"url": ...}`` on stdout and answers ``GET /_health``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

import requests

from cic_seeding.errors import ConfigError, ServiceError, ServiceUnavailableError

#: What each service of the devnet imports, by the extra of cic-seeding that installs it.
EXTRA_MODULES = {
    "meta": ("starlette", "uvicorn"),
    "custodial": ("celery", "kombu", "redis", "psycopg2"),
    "ussd": ("bcrypt", "starlette", "uvicorn", "celery", "kombu", "redis", "psycopg2"),
}


def require_extra(extra: str, what: str) -> None:
    """Raise :class:`ConfigError` (before anything starts) naming the packages ``what`` needs
    that are not installed, and the extra that installs them."""
    missing = [m for m in EXTRA_MODULES[extra] if not _installed(m)]
    if missing:
        raise ConfigError(f"{what} needs {', '.join(missing)}, not installed",
                          hint=f"pip install 'cic-seeding[{extra}]' (or [all])")


def _installed(module: str) -> bool:
    if module in sys.modules:  # kombu and celery replace their module object (no __spec__)
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class ServerProcess:
    """Stop, log and context management for a server child (mixed into its dataclass)."""

    url: str
    pid: int
    port: int
    _proc: subprocess.Popen[bytes] | None
    _log_path: str | None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL. Idempotent."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                proc.wait(timeout)
        self._cleanup()

    def log(self) -> str:
        """What the server wrote to stderr so far (its temporary log)."""
        if self._log_path and os.path.exists(self._log_path):
            return Path(self._log_path).read_text(encoding="utf-8", errors="replace")
        return ""

    def _cleanup(self) -> None:
        if self._proc is not None and self._proc.stdout is not None:
            self._proc.stdout.close()
        if self._log_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._log_path)
            self._log_path = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def spawn(cmd: list[str], secret: str, *, log_file: str | None, detach: bool,
          prefix: str) -> tuple[subprocess.Popen[bytes], str | None]:
    """Start ``cmd`` with ``secret`` on its stdin; stderr to ``log_file`` (else a temporary
    log, whose path is returned so the server can remove it)."""
    if log_file:
        fd, log_path = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), None
    else:
        fd, log_path = tempfile.mkstemp(prefix=prefix, suffix=".log")
    with os.fdopen(fd, "wb") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                start_new_session=detach)
    assert proc.stdin is not None
    proc.stdin.write(secret.encode() + b"\n")
    proc.stdin.close()
    return proc, log_path


def await_ready(server: ServerProcess, proc: subprocess.Popen[bytes], *, timeout: float,
                log_file: str | None, detach: bool, cmd: list[str], what: str) -> None:
    """Fill in ``server.url``/``port`` from the ready line and wait until it answers; on
    failure stop it and raise ServiceError with its output."""
    deadline = time.monotonic() + timeout
    try:
        server.url = _ready_line(proc, deadline)["url"]
        server.port = int(server.url.rsplit(":", 1)[1])
        _wait_answering(server.url, proc, deadline)
    except BaseException:
        detail = server.log().strip() or (
            Path(log_file).read_text(errors="replace")[-2000:] if log_file else "")
        server.stop()
        raise ServiceError(f"the {what} did not start: {detail or 'no output'}",
                           hint=f"command: {' '.join(cmd)}") from None
    if detach and proc.stdout is not None:
        proc.stdout.close()  # the server writes nothing more there; its log is log_file


def _ready_line(proc: subprocess.Popen[bytes], deadline: float) -> dict[str, str]:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServiceUnavailableError("no ready line before the deadline")
            if sel.select(left):
                line = proc.stdout.readline()
                if not line:
                    raise ServiceError(f"exited with status {proc.wait()}")
                return dict(json.loads(line))
    finally:
        sel.close()


def _wait_answering(url: str, proc: subprocess.Popen[bytes], deadline: float) -> None:
    delay = 0.01
    while True:
        if proc.poll() is not None:
            raise ServiceError(f"exited with status {proc.returncode}")
        try:
            if requests.get(f"{url}/_health", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() + delay > deadline:
            raise ServiceUnavailableError(f"{url} did not answer before the deadline")
        time.sleep(delay)  # poll back-off, bounded by the deadline
        delay = min(delay * 2, 0.2)
