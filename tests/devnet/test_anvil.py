"""The anvil process layer against the real anvil binary: start, state, stop, mining, reorgs."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from cic_devnet import anvil
from cic_devnet.anvil import (
    AnvilProcess,
    dev_key,
    mine,
    reorg,
    revert,
    rollback,
    rpc,
    snapshot,
    start_anvil,
    stop_pid,
)
from cic_seeding.errors import ServiceError, ServiceUnavailableError

CHAIN_ID = 1337
ADDR = "0x00000000000000000000000000000000000000AA"  # checksummed

Start = Callable[..., AnvilProcess]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """start_anvil with a per-test log; every node started is stopped at teardown."""
    started: list[AnvilProcess] = []
    names = itertools.count()  # one log per anvil, also when started from threads

    def _start(**kw: Any) -> AnvilProcess:
        kw.setdefault("chain_id", CHAIN_ID)
        kw.setdefault("log_file", tmp_path / f"anvil-{next(names)}.log")
        node = start_anvil(**kw)
        started.append(node)
        return node

    try:
        yield _start
    finally:
        for node in started:
            node.stop(timeout=5)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is not anvil."""
    proc = subprocess.Popen(["sleep", "30"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def balance(node: AnvilProcess, address: str = ADDR) -> int:
    return int(rpc(node.url, "eth_getBalance", [address, "latest"]), 16)


def transfer(node: AnvilProcess, nonce: int, to: str = ADDR, value: int = 1) -> str:
    tx = {"to": to, "value": value, "gas": 21000, "gasPrice": 2 * 10**9, "nonce": nonce,
          "chainId": node.chain_id}
    signed = Account.sign_transaction(tx, dev_key(0))
    return str(rpc(node.url, "eth_sendRawTransaction", ["0x" + signed.raw_transaction.hex()]))


# --- start -----------------------------------------------------------------------------------


def test_two_anvils_started_at_once_get_their_own_ports(start: Start) -> None:
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda cid: start(chain_id=cid), [CHAIN_ID, 4242])
    assert a.port != b.port
    assert a.url == f"http://127.0.0.1:{a.port}"
    assert int(rpc(a.url, "eth_chainId"), 16) == CHAIN_ID
    assert int(rpc(b.url, "eth_chainId"), 16) == 4242
    assert a.alive() and b.alive()


def test_dev_accounts_are_the_test_mnemonic(start: Start) -> None:
    node = start(accounts=3)
    expected = [Account.from_key(dev_key(i)).address.lower() for i in range(3)]
    assert [a.lower() for a in rpc(node.url, "eth_accounts")] == expected
    assert dev_key(0) == "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
    assert balance(node, expected[2]) == 10_000 * 10**18


def test_block_gas_limit_is_applied(start: Start) -> None:
    node = start(block_gas_limit=12_345_678)
    assert int(rpc(node.url, "eth_getBlockByNumber", ["latest", False])["gasLimit"], 16) \
        == 12_345_678


def test_explicit_port_in_use_is_a_clear_error(start: Start) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ServiceError, match="already in use"):
            start(port=taken.getsockname()[1])


def test_missing_override_binary_names_the_variable(
        start: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIC_ANVIL_BIN", str(tmp_path / "no-such-anvil"))
    with pytest.raises(ServiceError, match="CIC_ANVIL_BIN=.*no-such-anvil"):
        start()


def test_missing_npm_binary_says_what_to_run(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CIC_ANVIL_BIN", raising=False)
    monkeypatch.setattr(anvil, "_PROJECT_ROOT", tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServiceError, match="anvil not found") as err:
        anvil.anvil_binary()
    assert "bash scripts/setup.sh" in str(err.value) and "npm ci" in str(err.value)


def test_an_installed_package_finds_anvil_under_the_current_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wheel installed into a venv lives in site-packages: anvil comes from the project
    directory it runs in (after `npm ci` there)."""
    found = anvil.anvil_binary()
    project = tmp_path / "project"
    (project / "node_modules").mkdir(parents=True)
    relative = found.relative_to(anvil._PROJECT_ROOT / "node_modules")
    (project / "node_modules" / relative).parent.mkdir(parents=True)
    (project / "node_modules" / relative).symlink_to(found)
    monkeypatch.delenv("CIC_ANVIL_BIN", raising=False)
    monkeypatch.setattr(anvil, "_PROJECT_ROOT", tmp_path / "site-packages")
    monkeypatch.chdir(project)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert anvil.anvil_binary() == project / "node_modules" / relative


def test_corrupt_state_file_fails_with_anvils_reason(start: Start, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text('{"block": ')
    with pytest.raises(ServiceError, match="failed to parse json"):
        start(state=state)


def test_temporary_log_is_removed_on_stop() -> None:
    node = start_anvil(chain_id=CHAIN_ID)
    try:
        assert node.log_path.exists() and "Listening on" in node.log_tail()
    finally:
        node.stop()
    assert not node.log_path.exists()


# --- state file ------------------------------------------------------------------------------


def test_state_survives_sigterm_and_restart(start: Start, tmp_path: Path) -> None:
    state, log = tmp_path / "chain" / "state.json", tmp_path / "anvil.log"
    node = start(state=state, log_file=log)
    rpc(node.url, "anvil_setBalance", [ADDR, hex(12345)])
    assert mine(node.url) == 1
    report = node.stop()
    assert report.was_running and not report.forced and not node.alive()
    assert state.exists()

    again = start(state=state, log_file=log)  # same log: the new run's port must be read
    assert balance(again) == 12345
    assert int(rpc(again.url, "eth_blockNumber"), 16) == 1


def test_state_interval_bounds_the_loss_of_a_kill_9(start: Start, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    node = start(state=state, state_interval=1)
    rpc(node.url, "anvil_setBalance", [ADDR, hex(777)])
    mine(node.url)
    deadline = time.monotonic() + 5
    while _dumped_block(state) != 1:
        assert time.monotonic() < deadline, "no periodic dump within 5 s"
        time.sleep(0.05)
    os.kill(node.pid, signal.SIGKILL)
    node.stop()  # reaps

    assert balance(start(state=state)) == 777


def test_state_interval_below_one_second_is_refused(start: Start, tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="at least 1 s"):
        start(state=tmp_path / "s.json", state_interval=0)


def _dumped_block(state: Path) -> int | None:
    try:
        return int(json.loads(state.read_text())["best_block_number"])
    except (FileNotFoundError, ValueError):  # not yet written, or caught mid-write
        return None


# --- stop by pid -----------------------------------------------------------------------------


def test_stop_pid_stops_an_anvil(start: Start) -> None:
    node = start()
    report = stop_pid(node.pid, timeout=5)
    assert report.was_running and not report.forced
    assert not node.alive()
    with pytest.raises(ServiceUnavailableError):
        rpc(node.url, "eth_chainId", timeout=1)


def test_stop_pid_stops_a_detached_anvil_whose_starter_exited(tmp_path: Path) -> None:
    """What `devnet down` does: the process that started anvil is gone; only the pid is known."""
    state = tmp_path / "state.json"
    code = ("import json, sys; from pathlib import Path; from cic_devnet.anvil import start_anvil;"
            f"n = start_anvil(chain_id={CHAIN_ID}, state=Path(sys.argv[1]), "
            "log_file=Path(sys.argv[2]), detach=True); print(json.dumps(n.to_dict()))")
    out = subprocess.run([sys.executable, "-c", code, str(state), str(tmp_path / "a.log")],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    info = json.loads(out)
    try:
        assert int(rpc(info["url"], "eth_chainId"), 16) == CHAIN_ID
        report = stop_pid(info["pid"], timeout=5)
        assert report.was_running and not report.forced
        assert state.exists()  # written on SIGTERM
        assert not stop_pid(info["pid"]).was_running
    finally:
        stop_pid(info["pid"], timeout=5)


def test_stop_pid_of_a_gone_process_is_not_an_error() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    report = stop_pid(proc.pid)
    assert not report.was_running and "not running" in report.detail


def test_stop_pid_leaves_a_non_anvil_process_alone(sleeper: subprocess.Popen[bytes]) -> None:
    report = stop_pid(sleeper.pid)
    assert not report.was_running and "sleep" in report.detail
    assert sleeper.poll() is None


def test_to_dict_is_json_ready(start: Start, tmp_path: Path) -> None:
    node = start(state=tmp_path / "s.json")
    data = json.loads(json.dumps(node.to_dict()))
    assert data["pid"] == node.pid and data["url"] == node.url
    assert data["chain_id"] == CHAIN_ID and data["state_path"] == str(tmp_path / "s.json")


# --- mining, snapshots, reorgs ---------------------------------------------------------------


def test_transaction_stays_pending_until_mined(start: Start) -> None:
    node = start()
    tx_hash = transfer(node, nonce=0, value=5)
    assert rpc(node.url, "eth_getTransactionReceipt", [tx_hash]) is None
    assert rpc(node.url, "txpool_status")["pending"] == "0x1"
    assert mine(node.url) == 1
    receipt = rpc(node.url, "eth_getTransactionReceipt", [tx_hash])
    assert receipt["status"] == "0x1" and receipt["blockNumber"] == "0x1"
    assert mine(node.url, blocks=3) == 4


def test_reorg_replaces_blocks_and_drops_their_transactions(start: Start) -> None:
    node = start()
    mine(node.url, blocks=2)
    dropped = transfer(node, nonce=0, value=5)
    mine(node.url)
    old_hash = rpc(node.url, "eth_getBlockByNumber", ["0x3", False])["hash"]

    reorg(node.url, depth=1)
    assert int(rpc(node.url, "eth_blockNumber"), 16) == 3
    assert rpc(node.url, "eth_getBlockByNumber", ["0x3", False])["hash"] != old_hash
    assert rpc(node.url, "eth_getTransactionByHash", [dropped]) is None
    assert rpc(node.url, "txpool_status")["pending"] == "0x0"
    assert balance(node) == 0

    signed = Account.sign_transaction(
        {"to": ADDR, "value": 9, "gas": 21000, "gasPrice": 2 * 10**9, "nonce": 0,
         "chainId": CHAIN_ID}, dev_key(0))
    reorg(node.url, depth=2, txs=[("0x" + signed.raw_transaction.hex(), 1)])
    assert balance(node) == 9
    assert len(rpc(node.url, "eth_getBlockByNumber", ["0x3", False])["transactions"]) == 1


def test_reorg_deeper_than_the_chain_is_an_error(start: Start) -> None:
    node = start()
    mine(node.url)
    with pytest.raises(ServiceError, match="must not exceed current chain height"):
        reorg(node.url, depth=5)


def test_rollback_drops_blocks(start: Start) -> None:
    node = start()
    tx_hash = transfer(node, nonce=0)
    mine(node.url, blocks=3)
    assert rollback(node.url, depth=3) == 0
    assert rpc(node.url, "eth_getTransactionByHash", [tx_hash]) is None


def test_snapshot_and_revert(start: Start) -> None:
    node = start()
    snap = snapshot(node.url)
    rpc(node.url, "anvil_setBalance", [ADDR, hex(5)])
    mine(node.url)
    revert(node.url, snap)
    assert balance(node) == 0 and int(rpc(node.url, "eth_blockNumber"), 16) == 0
    with pytest.raises(ServiceError, match="already reverted"):
        revert(node.url, snap)


def test_rpc_to_a_closed_port_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ServiceUnavailableError, match="did not answer eth_chainId"):
        rpc(f"http://127.0.0.1:{port}", "eth_chainId", timeout=1)
