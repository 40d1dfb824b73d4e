"""Start and stop engine worker processes (for the devnet and tests), and wait until they answer.

A worker is ``python -m cic_devnet.custodial worker``; its configuration travels in its
environment (:func:`worker_env`), the passphrase by file name only. Readiness is a real round
trip: the ``cic_custodial.engine.status`` task through the broker, answered by a worker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cic_devnet._pids import runs, stop_pid_of
from cic_seeding.custodial import TASK_STATUS
from cic_seeding.custodial.connect import client_for
from cic_seeding.errors import ServiceError

MARKER = "cic_devnet.custodial"


@dataclass
class WorkerProcess:
    """One running worker; ``stop()`` ends it by pid (SIGTERM, then SIGKILL)."""

    pid: int
    name: str
    log_file: str
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def alive(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return _is_worker(self.pid)

    def stop(self, timeout: float = 10.0) -> None:
        if self._proc is None:
            stop_worker_pid(self.pid, timeout)
            return
        if self._proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self._proc.wait(timeout)

    def kill9(self) -> None:
        """SIGKILL, as a crash would (no shutdown, unacknowledged tasks stay in Redis)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        if self._proc is not None:
            self._proc.wait(10)

    def log(self) -> str:
        try:
            return Path(self.log_file).read_text(errors="replace")
        except OSError:
            return ""


def worker_env(values: Mapping[str, str | None], base: Mapping[str, str] | None = None
               ) -> dict[str, str]:
    """The environment of a worker: ``base`` (default: this process's) without any CIC_*
    variable, plus ``values`` (CIC_* names; None values left out)."""
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if not k.startswith("CIC_")}
    env.update({k: v for k, v in values.items() if v is not None})
    return env


def start_workers(env: Mapping[str, str], *, count: int = 1, concurrency: int = 4,
                  log_dir: str | Path, prefix: str = "custodial", detach: bool = False,
                  queue_loop: bool = True) -> list[WorkerProcess]:
    """Start ``count`` workers (not waiting for them; see :func:`wait_ready`)."""
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    workers = []
    for i in range(count):
        name = f"{prefix}-{i + 1}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
        log_file = log_dir / f"{prefix}-{i + 1}.log"
        cmd = [sys.executable, "-m", "cic_devnet.custodial", "worker", "--concurrency",
               str(concurrency), "--name", name]
        if not queue_loop:
            cmd.append("--no-queue-loop")
        with open(log_file, "ab") as log:
            proc = subprocess.Popen(cmd, env=dict(env), stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=log, start_new_session=detach)
        workers.append(WorkerProcess(proc.pid, name, str(log_file), proc))
    return workers


def wait_ready(workers: Sequence[WorkerProcess], broker_url: str, queue: str,
               timeout: float = 60.0) -> dict[str, Any]:
    """Wait until a worker answers the status task; returns the engine's status.

    ServiceError with the worker's log if one exits first or none answers in time.
    """
    client = client_for(broker_url, queue, timeout=timeout)
    deadline = time.monotonic() + timeout
    try:
        client.open()
        (task_id,) = client.send(TASK_STATUS, [{}])
        while True:
            dead = [w for w in workers if not w.alive()]
            if dead:
                raise ServiceError(f"custodial worker {dead[0].name} exited while starting: "
                                   f"{_tail(dead[0].log())}")
            replies = client.collect([task_id], min(deadline, time.monotonic() + 0.5))
            if task_id in replies:
                reply = replies[task_id]
                client.forget([task_id])
                if not reply.ok:
                    raise ServiceError(f"the custodial engine does not work: {reply.error}")
                return reply.result
            if time.monotonic() >= deadline:
                raise ServiceError(f"no custodial worker answered on queue {queue!r} within "
                                   f"{timeout:.0f}s: {_tail(workers[0].log()) if workers else ''}")
    finally:
        client.close()


def _tail(text: str, lines: int = 15) -> str:
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    return errors[-1] if errors else "\n".join(text.splitlines()[-lines:])


def _is_worker(pid: int) -> bool:
    return runs(pid, MARKER)


def stop_worker_pid(pid: int, timeout: float = 10.0) -> bool:
    """Stop a worker known only by pid, if that pid is still one; returns whether it ran."""
    return stop_pid_of(pid, MARKER, timeout)
