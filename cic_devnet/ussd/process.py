"""Start and stop the USSD gateway as a child process (for the devnet and tests)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cic_devnet._pids import stop_pid_of
from cic_devnet.meta.process import _ready_line, _wait_answering
from cic_seeding.errors import ServiceError
from cic_seeding.ussd.client import DEFAULT_SERVICE_CODE

MARKER = b"cic_devnet.ussd"


@dataclass(frozen=True)
class GatewayOptions:
    """Where the gateway keeps its state and which services it uses."""

    db: str
    redis: str
    broker: str
    queue: str
    meta_url: str
    meta_token: str
    chain_spec: str
    schema: str | None = None
    service_codes: tuple[str, ...] = (DEFAULT_SERVICE_CODE,)
    session_ttl: int = 180
    pin_rounds: int = 10


@dataclass
class GatewayProcess:
    """A running gateway: its URL and pid; ``stop()`` ends it by pid."""

    url: str
    pid: int
    port: int
    options: GatewayOptions
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log_path: str | None = field(default=None, repr=False)

    @property
    def service_code(self) -> str:
        return self.options.service_codes[0]

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

    def kill9(self) -> None:
        """SIGKILL, as a crash would."""
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self._proc.wait(10)
        self._cleanup()

    def restart(self, timeout: float = 20.0) -> GatewayProcess:
        """Stop, then start again on the same port with the same options."""
        self.stop()
        return start_gateway(self.options, port=self.port, timeout=timeout)

    def log(self) -> str:
        if self._log_path and os.path.exists(self._log_path):
            return Path(self._log_path).read_text(errors="replace")
        return ""

    def _cleanup(self) -> None:
        if self._proc is not None and self._proc.stdout is not None:
            self._proc.stdout.close()
        if self._log_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._log_path)
            self._log_path = None

    def __enter__(self) -> GatewayProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_gateway(options: GatewayOptions, *, port: int = 0, timeout: float = 20.0,
                  log_level: str = "warning", log_file: str | None = None,
                  detach: bool = False) -> GatewayProcess:
    """Start ``python -m cic_devnet.ussd`` on 127.0.0.1 and return once it answers.

    The metadata token reaches the child on stdin, never on its command line.
    """
    if log_file:
        fd, log_path = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), None
    else:
        fd, log_path = tempfile.mkstemp(prefix="cic-ussd-", suffix=".log")
    cmd = [sys.executable, "-m", "cic_devnet.ussd", "--port", str(port), "--db", options.db,
           "--redis", options.redis, "--broker", options.broker, "--queue", options.queue,
           "--meta-url", options.meta_url, "--meta-token-file", "-",
           "--chain-spec", options.chain_spec, "--session-ttl", str(options.session_ttl),
           "--pin-rounds", str(options.pin_rounds), "--log-level", log_level]
    for code in options.service_codes:
        cmd += ["--service-code", code]
    if options.schema:
        cmd += ["--schema", options.schema]
    with os.fdopen(fd, "wb") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                start_new_session=detach)
    assert proc.stdin is not None
    proc.stdin.write(options.meta_token.encode() + b"\n")
    proc.stdin.close()
    server = GatewayProcess(url="", pid=proc.pid, port=port, options=options, _proc=proc,
                            _log_path=log_path)
    deadline = time.monotonic() + timeout
    try:
        ready = _ready_line(proc, deadline)
        server.url = ready["url"]
        server.port = int(server.url.rsplit(":", 1)[1])
        _wait_answering(server, proc, deadline)  # type: ignore[arg-type]
    except BaseException:
        detail = server.log().strip() or (
            Path(log_file).read_text(errors="replace")[-2000:] if log_file else "")
        server.stop()
        raise ServiceError(f"the USSD gateway did not start: {detail or 'no output'}",
                           hint=f"command: {' '.join(cmd)}") from None
    if detach and proc.stdout is not None:
        proc.stdout.close()
    return server


def stop_gateway_pid(pid: int, timeout: float = 10.0) -> bool:
    """Stop a gateway known only by pid, if that pid is still one; returns whether it ran."""
    return stop_pid_of(pid, MARKER, timeout)
