"""Start, find and stop the local anvil node, and the few JSON-RPC calls the devnet drives it with.

anvil runs with ``--no-mining`` (automine loses transactions under load; clients mine
explicitly with :func:`mine`) unless asked to mine by itself (tests of real-node behaviour),
listens on 127.0.0.1 only, and derives its funded accounts from
:data:`DEV_MNEMONIC`, so :func:`dev_key` knows their keys.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from cic_devnet._pids import live, program_name, terminate
from cic_seeding.errors import ServiceError, ServiceUnavailableError

#: anvil's (and hardhat's) well-known test mnemonic; never hold real value on its keys.
DEV_MNEMONIC = "test test test test test test test test test test test junk"

#: Environment variable naming the anvil executable to run instead of the npm one.
ANVIL_BIN_ENV = "CIC_ANVIL_BIN"

#: Default seconds between periodic state dumps when a state file is given (anvil's own default
#: is 60 s). A dump of a 20,000-account chain (2 MB) takes ~15 ms and does not stall RPC, so 1 s
#: costs little and a ``kill -9`` loses at most about a second of chain.
DEFAULT_STATE_INTERVAL = 1

_PROJECT_ROOT = Path(__file__).resolve().parent.parent
_NPM_PLATFORMS = {
    ("linux", "x86_64"): "linux-amd64", ("linux", "amd64"): "linux-amd64",
    ("linux", "aarch64"): "linux-arm64", ("linux", "arm64"): "linux-arm64",
    ("darwin", "x86_64"): "darwin-amd64", ("darwin", "arm64"): "darwin-arm64",
}
_LISTENING = re.compile(rb"Listening on ([0-9.]+):(\d+)")
_SETUP_HINT = "run `bash scripts/setup.sh` (or `npm ci` in the project root) to install it"


def anvil_binary() -> Path:
    """The anvil executable: ``$CIC_ANVIL_BIN``, else the npm package's binary (in the
    checkout this code runs from, else -- for an installed wheel -- under the current
    directory's ``node_modules``), else ``anvil`` on PATH. Raises :class:`ServiceError` naming
    what was tried when none exists."""
    override = os.environ.get(ANVIL_BIN_ENV)
    if override:
        path = Path(override).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise ServiceError(f"{ANVIL_BIN_ENV}={override} is not an executable file",
                           hint=f"point {ANVIL_BIN_ENV} at an anvil binary or unset it")
    tried = []
    npm = _NPM_PLATFORMS.get((sys.platform, platform.machine().lower()))
    if npm:
        for root in dict.fromkeys((_PROJECT_ROOT, Path.cwd().resolve())):
            path = root / "node_modules" / "@foundry-rs" / f"anvil-{npm}" / "bin" / "anvil"
            if path.is_file() and os.access(path, os.X_OK):
                return path
            tried.append(str(path))
    on_path = shutil.which("anvil")
    if on_path:
        return Path(on_path)
    tried.append("`anvil` on PATH")
    raise ServiceError(f"anvil not found (looked at {' and '.join(tried)})", hint=_SETUP_HINT)


@dataclass(frozen=True)
class StopReport:
    """What stopping an anvil did. ``forced`` means SIGKILL was needed, so the state file may
    lag the chain by up to one state interval."""

    pid: int
    was_running: bool
    forced: bool = False
    detail: str = ""


@dataclass
class AnvilProcess:
    """A running anvil started by :func:`start_anvil`; ``stop()`` ends it by pid."""

    pid: int
    port: int
    url: str
    chain_id: int
    state_path: Path | None
    log_path: Path
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _temp_log: bool = field(default=False, repr=False)

    def alive(self) -> bool:
        """True while the process runs (a zombie counts as ended)."""
        if self._proc is not None:
            return self._proc.poll() is None
        return _anvil_runs(self.pid)

    def stop(self, timeout: float = 10.0) -> StopReport:
        """SIGTERM (anvil then writes its state file), wait up to ``timeout`` s, then SIGKILL.
        Idempotent; removes the log file only if :func:`start_anvil` made a temporary one."""
        try:
            if self._proc is None:
                return stop_pid(self.pid, timeout)
            if self._proc.poll() is not None:
                return StopReport(self.pid, False, detail=f"anvil (pid {self.pid}) had exited")
            with contextlib.suppress(ProcessLookupError):  # it may exit meanwhile
                os.kill(self.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout)
                return StopReport(self.pid, True, detail=f"anvil (pid {self.pid}) stopped")
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
                return StopReport(self.pid, True, forced=True,
                                  detail=f"anvil (pid {self.pid}) ignored SIGTERM for "
                                         f"{timeout:g} s and was killed")
        finally:
            if self._temp_log and not self.alive():
                with contextlib.suppress(FileNotFoundError):
                    self.log_path.unlink()

    def log_tail(self, chars: int = 4000) -> str:
        """The last ``chars`` characters anvil wrote to its log."""
        return _tail(self.log_path, 0, chars)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (for the devnet's pid file)."""
        return {"pid": self.pid, "port": self.port, "url": self.url, "chain_id": self.chain_id,
                "state_path": str(self.state_path) if self.state_path else None,
                "log_path": str(self.log_path)}

    def __enter__(self) -> AnvilProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_anvil(*, chain_id: int, port: int = 0, state: Path | None = None,
                state_interval: int = DEFAULT_STATE_INTERVAL, accounts: int = 1,
                mnemonic: str = DEV_MNEMONIC, log_file: Path | None = None,
                block_gas_limit: int | None = None, keep_states: int | None = None,
                timeout: float = 30.0, detach: bool = False, automine: bool = False,
                block_time: float | None = None) -> AnvilProcess:
    """Start anvil on 127.0.0.1 and return once it answers ``eth_chainId`` with ``chain_id``.

    ``port=0`` lets the kernel choose a free port (anvil binds port 0 itself and reports the
    port it got), so devnets started at the same time never race for one. ``state`` is loaded
    if the file exists, dumped every ``state_interval`` seconds (>= 1) and on SIGTERM; a
    ``kill -9`` loses at most that much chain. anvil logs each RPC method name (one short line
    per request) to ``log_file``, appended to; give each anvil its own log, since the port is
    read from it. Without one a temporary log is used and removed by
    :meth:`AnvilProcess.stop`. ``detach`` puts anvil in its own session so it outlives the
    caller's terminal (for a background devnet). ``automine`` starts it mining by itself, a
    block per transaction, and ``block_time`` a block every that many seconds, instead of
    ``--no-mining`` (nodes of either kind, to prove the clients against). ``keep_states`` bounds
    the block states anvil
    keeps in memory (``--prune-history``): without it, seeding 100,000 users grew anvil past
    10 GB and the kernel killed it. Raises :class:`ServiceError` with the tail of
    anvil's log if it does not come up within ``timeout`` seconds.
    """
    if state_interval < 1:
        raise ServiceError(f"state_interval must be at least 1 s, got {state_interval}")
    if state is not None:
        state = Path(state).resolve()
        state.parent.mkdir(parents=True, exist_ok=True)
    cmd = _command(port=port, chain_id=chain_id, state=state, state_interval=state_interval,
                   accounts=accounts, mnemonic=mnemonic, block_gas_limit=block_gas_limit,
                   keep_states=keep_states, automine=automine, block_time=block_time)
    temp_log = log_file is None
    if log_file is None:
        fd, name = tempfile.mkstemp(prefix="cic-anvil-", suffix=".log")
        os.close(fd)
        log_file = Path(name)
    log_path = Path(log_file).resolve()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # 0600: anvil prints its dev accounts' private keys (the devnet deployer's among them)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)  # (a log an older version made 0644)
    with open(fd, "ab") as log:
        offset = log.seek(0, os.SEEK_END)  # a reused log holds earlier runs' "Listening on" lines
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=detach)
    node = AnvilProcess(pid=proc.pid, port=port, url="", chain_id=chain_id, state_path=state,
                        log_path=log_path, _proc=proc, _temp_log=temp_log)
    try:
        deadline = time.monotonic() + timeout
        node.port = _wait_listening(proc, log_path, offset, deadline)
        node.url = f"http://127.0.0.1:{node.port}"
        _wait_chain_id(node, proc, deadline)
    except BaseException as exc:  # also Ctrl-C: never leave a half-started anvil behind
        tail = _tail(log_path, offset, 2000).strip()
        node.stop(timeout=5)
        if not isinstance(exc, ServiceError):
            raise
        hint = f"{exc.hint}; " if exc.hint else ""
        raise ServiceError(f"anvil did not start: {exc.message}",
                           hint=f"{hint}anvil's output: {tail or '(none)'}; "
                                f"command: {' '.join(cmd)}") from None
    return node


def _command(*, port: int, chain_id: int, state: Path | None, state_interval: int,
             accounts: int, mnemonic: str, block_gas_limit: int | None,
             keep_states: int | None = None, automine: bool = False,
             block_time: float | None = None) -> list[str]:
    if block_time is not None:
        mining = ["--block-time", f"{block_time:g}"]
    else:
        mining = [] if automine else ["--no-mining"]
    cmd = [str(anvil_binary()), "--host", "127.0.0.1", "--port", str(port),
           "--chain-id", str(chain_id), *mining, "--accounts", str(accounts),
           "--mnemonic", mnemonic, "--color", "never"]
    if block_gas_limit is not None:
        cmd += ["--gas-limit", str(block_gas_limit)]
    if keep_states is not None:
        cmd += ["--prune-history", str(keep_states)]
    if state is not None:
        cmd += ["--state", str(state), "--state-interval", str(state_interval)]
    return cmd


def _wait_listening(proc: subprocess.Popen[bytes], log_path: Path, offset: int,
                    deadline: float) -> int:
    """The port anvil reports in its 'Listening on' line (written after it has bound)."""
    delay = 0.005
    while True:
        with open(log_path, "rb") as fh:
            fh.seek(offset)
            found = _LISTENING.search(fh.read())
        if found:
            return int(found.group(2))
        if proc.poll() is not None:
            text = _tail(log_path, offset, 2000)
            if "Address already in use" in text:
                raise ServiceError("its port is already in use",
                                   hint="stop what listens there (another devnet?) or use port=0")
            raise ServiceError(f"it exited with status {proc.returncode}")
        if time.monotonic() + delay > deadline:
            raise ServiceUnavailableError("it did not report a listening port before the deadline")
        time.sleep(delay)  # poll back-off, bounded by the deadline
        delay = min(delay * 2, 0.1)


def _wait_chain_id(node: AnvilProcess, proc: subprocess.Popen[bytes], deadline: float) -> None:
    delay = 0.005
    while True:
        if proc.poll() is not None:
            raise ServiceError(f"it exited with status {proc.returncode}")
        try:
            got = int(rpc(node.url, "eth_chainId", [], timeout=2), 16)
        except ServiceUnavailableError:
            got = None
        if got is not None:
            if got != node.chain_id:
                raise ServiceError(f"{node.url} answers chain id {got}, not {node.chain_id}")
            return
        if time.monotonic() + delay > deadline:
            raise ServiceUnavailableError(f"{node.url} did not answer before the deadline")
        time.sleep(delay)  # poll back-off, bounded by the deadline
        delay = min(delay * 2, 0.1)


def stop_pid(pid: int, timeout: float = 10.0) -> StopReport:
    """Stop the anvil with process id ``pid`` (known only from a pid file): SIGTERM, wait up to
    ``timeout`` s, then SIGKILL. Signals nothing unless the pid runs a program named
    ``anvil*``; a pid that is gone or now belongs to another program is reported as not
    running, not raised. Raises :class:`ServiceError` only when the OS refuses the signal."""
    proc = live(pid)
    name = program_name(proc) if proc is not None else None
    if proc is None or name is None:
        return StopReport(pid, False, detail=f"anvil is not running (no process {pid})")
    if not _is_anvil(name):
        return StopReport(pid, False, detail=f"anvil is not running: pid {pid} now belongs to "
                                             f"{name!r}, which was left alone")
    if not terminate(proc, _anvil_runs, timeout, "anvil"):
        return StopReport(pid, True, detail=f"anvil (pid {pid}) stopped")
    return StopReport(pid, True, forced=True,
                      detail=f"anvil (pid {pid}) ignored SIGTERM for {timeout:g} s and was killed")


def _anvil_runs(pid: int) -> bool:
    """True while ``pid`` runs a program named ``anvil*`` (a zombie counts as ended)."""
    proc = live(pid)
    return proc is not None and _is_anvil(program_name(proc))


def _is_anvil(name: str | None) -> bool:
    return name is not None and name.startswith("anvil")


def _tail(path: Path, offset: int, chars: int) -> str:
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(offset, size - chars))
            return fh.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


# --- JSON-RPC helpers ------------------------------------------------------------------------


def rpc(url: str, method: str, params: Sequence[Any] | None = None,
        timeout: float = 10.0) -> Any:
    """One raw JSON-RPC call; returns its ``result``. Raises :class:`ServiceUnavailableError`
    when the node does not answer (refused, timeout, 5xx) and :class:`ServiceError` when it
    answers with an error."""
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method,
                            "params": list(params or [])}
    try:
        resp = requests.post(url, json=body, timeout=timeout)
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise ServiceUnavailableError(f"{url} did not answer {method} ({type(exc).__name__})",
                                      hint="check that the devnet's anvil is running") from None
    if resp.status_code >= 500:
        raise ServiceUnavailableError(f"{url} answered {method} with HTTP {resp.status_code}")
    try:
        reply = resp.json()
    except ValueError:
        raise ServiceError(f"{url} answered {method} with HTTP {resp.status_code} and no "
                           f"JSON: {resp.text[:200]!r}") from None
    if not isinstance(reply, dict) or ("error" not in reply and "result" not in reply):
        raise ServiceError(f"{url} answered {method} with no result: {str(reply)[:200]}")
    if "error" in reply:
        err = reply["error"]
        detail = (f"{err.get('message')} (code {err.get('code')})" if isinstance(err, dict)
                  else str(err))
        raise ServiceError(f"{method} failed at {url}: {detail}")
    return reply["result"]


def mine(url: str, blocks: int = 1) -> int:
    """Mine ``blocks`` blocks (the first takes the pending pool, up to the block gas limit);
    returns the new head's number."""
    if blocks < 1:
        raise ValueError(f"blocks must be >= 1, got {blocks}")
    if blocks == 1:
        rpc(url, "evm_mine", [])
    else:
        rpc(url, "anvil_mine", [hex(blocks)])
    return int(rpc(url, "eth_blockNumber", []), 16)


def snapshot(url: str) -> str:
    """Take an ``evm_snapshot``; returns its id for :func:`revert`."""
    return str(rpc(url, "evm_snapshot", []))


def revert(url: str, snapshot_id: str) -> None:
    """Return the chain to a snapshot (``evm_revert``); a snapshot can be reverted to once."""
    if rpc(url, "evm_revert", [snapshot_id]) is not True:
        raise ServiceError(f"evm_revert to snapshot {snapshot_id} failed at {url}",
                           hint="the id is unknown or was already reverted to; take a new one")


def reorg(url: str, depth: int, txs: Sequence[tuple[str | dict[str, Any], int]] = ()) -> None:
    """Replace the last ``depth`` blocks with as many new ones (``anvil_reorg``): the head
    number stays, the hashes change, and the replaced blocks' transactions are gone (not back
    in the pool). ``txs`` are ``(tx, offset)`` pairs mined into the new block at ``offset``
    (0 .. depth-1) after the common ancestor; ``tx`` is a signed raw hex string or a
    transaction request dict from an unlocked account. Needs the node's in-memory history:
    blocks loaded from a state file cannot be reorganised."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    rpc(url, "anvil_reorg", [depth, [[tx, offset] for tx, offset in txs]])


def rollback(url: str, depth: int = 1) -> int:
    """Drop the last ``depth`` blocks (``anvil_rollback``); returns the new head's number.
    Same in-memory-history limit as :func:`reorg`."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    rpc(url, "anvil_rollback", [depth])
    return int(rpc(url, "eth_blockNumber", []), 16)


# --- dev accounts ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def dev_key(i: int, mnemonic: str = DEV_MNEMONIC) -> str:
    """0x-hex private key of dev account ``i`` (path m/44'/60'/0'/0/i), the same account anvil
    funds as its ``i``-th. The devnet's deployer is ``dev_key(0)``."""
    if i < 0:
        raise ValueError(f"dev account index must be >= 0, got {i}")
    from eth_account import Account  # deferred: only key users pay the import

    Account.enable_unaudited_hdwallet_features()
    acct = Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{i}")
    return "0x" + bytes(acct.key).hex()
