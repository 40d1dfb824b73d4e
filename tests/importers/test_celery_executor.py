"""``cic-seed import eth --executor celery`` against the real services: anvil, Redis and
import worker processes (``cic-seed import-worker``), started and stopped by pid.

Every test has its own Celery queue, and every worker its own key directory (as if it ran
on a machine of its own), so these tests run beside any others.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cic_devnet.devnet import Devnet
from cic_seeding.chain.connect import connect
from cic_seeding.chain.keyfile import decrypt_v3
from cic_seeding.chain.registry import ACCOUNTS_INDEX, ADDRESS_ADDED
from cic_seeding.chain.tx import Call
from cic_seeding.config import Settings
from cic_seeding.datadir import DataDir
from cic_seeding.generate.generator import GenerateOptions, generate
from cic_seeding.generate.keys import address_of, derive_private_key
from cic_seeding.importers._celery_exec import Job
from cic_seeding.importers.celery_worker import (
    WorkerContext,
    import_batch,
    spawn_worker,
    wait_workers,
)
from tests.conftest import devnet_settings
from tests.e2e.procs import db_rows, users_in, wait_for
from tests.helpers import run_cli

REDIS_URL = "redis://127.0.0.1:6379/0"
USERS = 200
#: Seconds a batch may take before the dispatcher sends it again (a dead worker's batch).
TASK_TIMEOUT = "15"


class Fleet:
    """Import workers of one test: each a process with its own key directory."""

    def __init__(self, devnet: Devnet, root: Path) -> None:
        self.root = root
        self.queue = f"test_import_{uuid.uuid4().hex[:12]}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CIC_")}
        self.env.update({"CIC_DEVNET_DIR": str(devnet.directory),
                         "CIC_IMPORT_BROKER_URL": REDIS_URL, "CIC_IMPORT_QUEUE": self.queue,
                         "CIC_IMPORT_TASK_TIMEOUT": TASK_TIMEOUT})
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def settings(self, data: Path) -> Settings:
        from cic_seeding.config import load_settings

        return load_settings({"data_dir": str(data)}, config_file=None,
                             environ={k: v for k, v in self.env.items() if k.startswith("CIC_")})

    def start(self, *names: str) -> None:
        for name in names:
            env = {**self.env, "CIC_IMPORT_WORKER_DIR": str(self.root / f"key-{name}")}
            self.procs[name] = spawn_worker(env, name=name, log_file=self.root / f"{name}.log",
                                            cwd=self.root)
        wait_workers(self.settings(self.root), names, [self.procs[n] for n in names])

    def kill9(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        try:
            client.delete(self.queue, f"_kombu.binding.{self.queue}")
        finally:
            client.close()


@pytest.fixture
def fleet(module_devnet: Devnet, tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(module_devnet, tmp_path)
    try:
        yield f
    finally:
        f.stop()


def make_data(root: Path, count: int, seed: int) -> Path:
    data = root / "data"
    generate(GenerateOptions(directory=data, count=count, seed=seed, workers=2))
    return data


def cli(fleet: Fleet, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=fleet.root, env={k: v for k, v in fleet.env.items()
                                               if k.startswith("CIC_")})


def import_args(data: Path, *extra: str) -> list[str]:
    return ["import", "eth", "--executor", "celery", "--dir", str(data), *extra]


def chain_registrations(settings: Settings) -> tuple[int, list[str]]:
    """The AccountsIndex's entry count and every address its AddressAdded logs name."""
    network = connect(settings, signer=False)
    index = network.accounts_index
    count = network.client.call(index, ACCOUNTS_INDEX.fn("entryCount"))
    logs = network.client.logs(index, ADDRESS_ADDED, 0, network.client.head())
    return count, ["0x" + log["data"][-40:] for log in logs]


def test_batch_function_asks_for_rights_then_registers_once(module_devnet: Devnet,
                                                            tmp_path: Path) -> None:
    """The worker's logic without a worker: an unprovisioned signer asks instead of working;
    once a writer with gas it registers the batch and returns keyfiles; a repeat finds it."""
    data = make_data(tmp_path, 12, seed=9101)
    settings = devnet_settings(module_devnet, data, import_worker_dir=str(tmp_path / "key"))
    ctx = WorkerContext(settings, "plain")
    try:
        network = ctx.network
        seed = DataDir(data).manifest().seed
        job = Job("plain-run", network.client.chain_id, ctx.index, seed, "light")
        users = [[u.index, u.address, True] for u in DataDir(data).users()]

        first = import_batch(ctx, job, 0, users)
        needs = first["needs"]
        assert needs["signer"] == ctx.signer.address and needs["writer"] is False
        assert needs["topup"] > needs["wei"] > 0 and "confirmed" not in first

        owner = connect(devnet_settings(module_devnet, data)).client
        owner.transact(Call(ctx.index, ACCOUNTS_INDEX.encode("addWriter", ctx.signer.address),
                            gas=100_000), "addWriter")
        owner.transact(Call(ctx.signer.address, b"", value=first["needs"]["topup"],
                            gas=21_000), "gas")

        second = import_batch(ctx, job, 0, users)
        assert sorted(second["confirmed"]) == sorted(u[1] for u in users)
        assert second["failed"] == {} and second["bad"] == {} and second["found"] == []
        assert len(second["txs"]) == len(users)
        for index, address, _ in users[:2]:
            key = decrypt_v3(second["keyfiles"][address], settings.keystore_password)
            assert key == derive_private_key(seed, index)
            assert address_of(key) == address

        third = import_batch(ctx, job, 0, [[i, a, False] for i, a, _ in users])
        assert sorted(third["found"]) == sorted(u[1] for u in users)
        assert third["sent"] == {} and third["keyfiles"] == {}
    finally:
        ctx.close()


def test_one_worker_imports_200_users_then_sync_and_verify_pass(fleet: Fleet) -> None:
    data = make_data(fleet.root, USERS, seed=9201)
    fleet.start("w1")

    run = cli(fleet, *import_args(data, "--batch-size", "25"))
    assert run.returncode == 0, run.stderr
    assert f"{USERS} users imported this run (0 already on chain)" in run.stdout, run.stdout

    sync = cli(fleet, "sync", "eth", "--dir", str(data), "--timeout", "120", "--poll", "0.1")
    assert sync.returncode == 0, sync.stdout + sync.stderr
    verify = cli(fleet, "verify", str(data))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "all ok" in verify.stdout, verify.stdout

    store = DataDir(data)
    keyfiles = sorted(store.keystore.iterdir())
    assert len(keyfiles) == USERS
    assert {stat.S_IMODE(p.stat().st_mode) for p in keyfiles} == {0o600}
    assert sum(1 for _ in store.new) == USERS
    # tx/: every registration (written by the dispatcher) and every payment of the syncer
    (paid,) = db_rows(data, "SELECT count(DISTINCT tx_hash) FROM payments "
                            "WHERE importer = 'eth' AND status = 'confirmed'")[0]
    assert paid >= 2 * USERS
    assert sum(1 for _ in store.tx) == USERS + paid
    count, added = chain_registrations(fleet.settings(data))
    generated = {u.address.lower() for u in store.users()}
    assert generated <= set(added) and len(added) == len(set(added))

    again = cli(fleet, *import_args(data))
    assert again.returncode == 0, again.stderr
    assert "0 users imported this run" in again.stdout and f"{USERS} before" in again.stdout


def test_two_workers_one_killed_mid_run_rerun_converges(fleet: Fleet) -> None:
    """kill -9 of a worker holding batches: the dispatcher sends them again, the rerun has
    nothing left to do, every user is registered exactly once and every check passes."""
    data = make_data(fleet.root, USERS, seed=9301)
    fleet.start("w1", "w2")
    before, _ = chain_registrations(fleet.settings(data))

    out, err = fleet.root / "run1.out", fleet.root / "run1.err"
    with open(out, "wb") as fo, open(err, "wb") as fe:
        first = subprocess.Popen(
            [sys.executable, "-m", "cic_seeding.cli.main",
             *import_args(data, "--batch-size", "10")], cwd=fleet.root, stdout=fo, stderr=fe,
            env={**os.environ, **{k: v for k, v in fleet.env.items() if k.startswith("CIC_")}})
    try:
        wait_for(lambda: users_in(data, "confirmed") >= 20, timeout=120,
                 what="the first confirmed users")
        assert first.poll() is None, "the import ended before the kill"
        assert "received" in fleet.log("w1")  # it had taken batches
        fleet.kill9("w1")
        assert first.wait(300) in (0, 1), err.read_text()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)

    rerun = cli(fleet, *import_args(data))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert users_in(data, "confirmed") == USERS

    count, added = chain_registrations(fleet.settings(data))
    generated = {u.address.lower() for u in DataDir(data).users()}
    assert count - before == USERS  # nobody lost, nobody registered twice
    assert len([a for a in added if a in generated]) == USERS == len(generated & set(added))

    sync = cli(fleet, "sync", "eth", "--dir", str(data), "--timeout", "120", "--poll", "0.1")
    assert sync.returncode == 0, sync.stdout + sync.stderr
    verify = cli(fleet, "verify", str(data))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "all ok" in verify.stdout, verify.stdout


def test_no_worker_on_the_queue_is_one_clear_line(fleet: Fleet) -> None:
    data = make_data(fleet.root, 3, seed=9401)
    fleet.env["CIC_IMPORT_TASK_TIMEOUT"] = "2"  # the wait for a worker's answer
    run = cli(fleet, *import_args(data))
    assert run.returncode == 1
    line = run.stderr.strip().splitlines()[-1]
    assert line.startswith("error: eth: no import worker answered on queue"), run.stderr
    assert "cic-seed import-worker" in line


@pytest.mark.parametrize(("args", "says"), [
    (["import", "cic_meta", "--executor", "celery"], "runs with executor local only"),
    (["import", "eth", "--executor", "celery", "--batch-funder"],
     "--executor celery does not combine with --batch-funder"),
])
def test_unsupported_combinations_are_refused(fleet: Fleet, args: list[str], says: str) -> None:
    data = make_data(fleet.root, 2, seed=9501)
    run = cli(fleet, *args, "--dir", str(data))
    assert run.returncode == 2, run.stdout + run.stderr
    assert says in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_a_worker_with_another_keystore_password_stops_the_run(fleet: Fleet) -> None:
    data = make_data(fleet.root, 10, seed=9601)
    fleet.env["CIC_KEYSTORE_PASSWORD"] = "not-the-run's"
    fleet.start("w1")
    del fleet.env["CIC_KEYSTORE_PASSWORD"]
    run = cli(fleet, *import_args(data))
    assert run.returncode == 1
    assert "encrypts keyfiles with another keystore password" in run.stderr, run.stderr
    keystore = DataDir(data).keystore
    assert not keystore.is_dir() or not any(keystore.iterdir())  # none written

