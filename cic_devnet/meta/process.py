"""Start and stop the metadata server as a child process (for the devnet and tests)."""

from __future__ import annotations

import secrets
import subprocess
import sys
from dataclasses import dataclass, field

from cic_devnet._pids import stop_pid_of
from cic_devnet._server import ServerProcess, await_ready, require_extra, spawn

#: What the command line of a metadata server holds (how a pid is known to be one).
MARKER = "cic_devnet.meta"


@dataclass
class MetaServerProcess(ServerProcess):
    """A running metadata server: its URL, pid and write token; ``stop()`` ends it by pid."""

    url: str
    pid: int
    token: str
    port: int
    db: str
    schema: str | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log_path: str | None = field(default=None, repr=False)

    def restart(self, timeout: float = 20.0) -> MetaServerProcess:
        """Stop, then start again on the same port, store and token."""
        self.stop()
        return start_meta_server(port=self.port, db=self.db, token=self.token,
                                 schema=self.schema, timeout=timeout)


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
    require_extra("meta", "the metadata server")
    token = token or secrets.token_urlsafe(32)
    cmd = [sys.executable, "-m", "cic_devnet.meta", "--port", str(port), "--db", db,
           "--token-file", "-", "--log-level", log_level]
    if schema:
        cmd += ["--schema", schema]
    proc, log_path = spawn(cmd, token, log_file=log_file, detach=detach, prefix="cic-meta-")
    server = MetaServerProcess(url="", pid=proc.pid, token=token, port=port, db=db,
                               schema=schema, _proc=proc, _log_path=log_path)
    await_ready(server, proc, timeout=timeout, log_file=log_file, detach=detach, cmd=cmd,
                what="metadata server")
    return server


def stop_meta_pid(pid: int, timeout: float = 10.0) -> bool:
    """Stop a metadata server known only by pid (SIGTERM, then SIGKILL); only if that pid is
    still ``python -m cic_devnet.meta``. Returns whether it was running."""
    return stop_pid_of(pid, MARKER, timeout)
