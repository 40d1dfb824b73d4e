"""Start and stop the metadata server as a child process (for the devnet and tests)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from cic_devnet._pids import stop_pid_of
from cic_seeding.errors import ServiceError, ServiceUnavailableError


@dataclass
class MetaServerProcess:
    """A running metadata server: its URL, pid and write token; ``stop()`` ends it by pid."""

    url: str
    pid: int
    token: str
    port: int
    db: str
    schema: str | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log_path: str | None = field(default=None, repr=False)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL. Idempotent."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            self._cleanup()
            return
        os.kill(self.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            proc.wait(timeout)
        self._cleanup()

    def restart(self, timeout: float = 20.0) -> MetaServerProcess:
        """Stop, then start again on the same port, store and token."""
        self.stop()
        return start_meta_server(port=self.port, db=self.db, token=self.token,
                                 schema=self.schema, timeout=timeout)

    def log(self) -> str:
        """What the server wrote to stderr so far."""
        if self._log_path and os.path.exists(self._log_path):
            with open(self._log_path, encoding="utf-8", errors="replace") as fh:
                return fh.read()
        return ""

    def _cleanup(self) -> None:
        if self._proc is not None and self._proc.stdout is not None:
            self._proc.stdout.close()
        if self._log_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._log_path)
            self._log_path = None

    def __enter__(self) -> MetaServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_meta_server(*, port: int = 0, db: str, token: str | None = None,
                      schema: str | None = None, timeout: float = 20.0,
                      log_level: str = "warning", log_file: str | None = None,
                      detach: bool = False) -> MetaServerProcess:
    """Start ``python -m cic_devnet.meta`` on 127.0.0.1 and return once it answers.

    ``port=0`` picks a free port; ``token`` defaults to a fresh random one. The token reaches the
    child on stdin, never on its command line or in a file. ``log_file`` keeps the server's log
    (else a temporary one, removed on stop); ``detach`` lets it outlive this process (a
    background devnet), to be stopped by pid.
    """
    token = token or secrets.token_urlsafe(32)
    if log_file:
        fd, log_path = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), None
    else:
        fd, log_path = tempfile.mkstemp(prefix="cic-meta-", suffix=".log")
    cmd = [sys.executable, "-m", "cic_devnet.meta", "--port", str(port), "--db", db,
           "--token-file", "-", "--log-level", log_level]
    if schema:
        cmd += ["--schema", schema]
    with os.fdopen(fd, "wb") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                start_new_session=detach)
    assert proc.stdin is not None
    proc.stdin.write(token.encode() + b"\n")
    proc.stdin.close()
    server = MetaServerProcess(url="", pid=proc.pid, token=token, port=port, db=db,
                               schema=schema, _proc=proc, _log_path=log_path)
    deadline = time.monotonic() + timeout
    try:
        ready = _ready_line(proc, deadline)
        server.url = ready["url"]
        server.port = int(server.url.rsplit(":", 1)[1])
        _wait_answering(server, proc, deadline)
    except BaseException:
        detail = server.log().strip() or (
            Path(log_file).read_text(errors="replace")[-2000:] if log_file else "")
        server.stop()
        raise ServiceError(f"the metadata server did not start: {detail or 'no output'}",
                           hint=f"command: {' '.join(cmd)}") from None
    if detach and proc.stdout is not None:
        proc.stdout.close()  # the server writes nothing more there; its log is log_file
    return server


def stop_meta_pid(pid: int, timeout: float = 10.0) -> bool:
    """Stop a metadata server known only by pid (SIGTERM, then SIGKILL); only if that pid is
    still ``python -m cic_devnet.meta``. Returns whether it was running."""
    return stop_pid_of(pid, b"cic_devnet.meta", timeout)


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


def _wait_answering(server: MetaServerProcess, proc: subprocess.Popen[bytes],
                    deadline: float) -> None:
    delay = 0.01
    while True:
        if proc.poll() is not None:
            raise ServiceError(f"exited with status {proc.returncode}")
        try:
            if requests.get(f"{server.url}/_health", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() + delay > deadline:
            raise ServiceUnavailableError(f"{server.url} did not answer before the deadline")
        time.sleep(delay)  # poll back-off, bounded by the deadline
        delay = min(delay * 2, 0.2)
