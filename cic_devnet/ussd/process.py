"""Start and stop the USSD gateway as a child process (for the devnet and tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field

from cic_devnet._pids import stop_pid_of
from cic_devnet._server import ServerProcess, await_ready, require_extra, spawn
from cic_seeding.ussd.client import DEFAULT_SERVICE_CODE

MARKER = "cic_devnet.ussd"


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
class GatewayProcess(ServerProcess):
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


def start_gateway(options: GatewayOptions, *, port: int = 0, timeout: float = 20.0,
                  log_level: str = "warning", log_file: str | None = None,
                  detach: bool = False) -> GatewayProcess:
    """Start ``python -m cic_devnet.ussd`` on 127.0.0.1 and return once it answers.

    The metadata token reaches the child on stdin, never on its command line.
    """
    require_extra("ussd", "the USSD gateway")
    cmd = [sys.executable, "-m", "cic_devnet.ussd", "--port", str(port), "--db", options.db,
           "--redis", options.redis, "--broker", options.broker, "--queue", options.queue,
           "--meta-url", options.meta_url, "--meta-token-file", "-",
           "--chain-spec", options.chain_spec, "--session-ttl", str(options.session_ttl),
           "--pin-rounds", str(options.pin_rounds), "--log-level", log_level]
    for code in options.service_codes:
        cmd += ["--service-code", code]
    if options.schema:
        cmd += ["--schema", options.schema]
    proc, log_path = spawn(cmd, options.meta_token, log_file=log_file, detach=detach,
                           prefix="cic-ussd-")
    server = GatewayProcess(url="", pid=proc.pid, port=port, options=options, _proc=proc,
                            _log_path=log_path)
    await_ready(server, proc, timeout=timeout, log_file=log_file, detach=detach, cmd=cmd,
                what="USSD gateway")
    return server


def stop_gateway_pid(pid: int, timeout: float = 10.0) -> bool:
    """Stop a gateway known only by pid, if that pid is still one; returns whether it ran."""
    return stop_pid_of(pid, MARKER, timeout)
