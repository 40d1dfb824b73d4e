"""SIGTERM: the importer and the syncer stop cleanly mid-run, with their state flushed (what
they did is recorded, nothing half-written), say so on one line, exit non-zero; a rerun then
completes with nothing lost and nothing paid twice."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

from cic_devnet.devnet import Devnet
from cic_seeding.chain.connect import connect
from cic_seeding.chain.registry import ACCOUNTS_INDEX
from cic_seeding.datadir import DataDir
from cic_seeding.state import Status, open_state_store
from tests.e2e.ledger import Holdings, assert_paid_exactly_once, make_data, planned_payments
from tests.e2e.procs import clean_env, payments_in, running, seed_args, users_in, wait_for

USERS = 120
BATCH = "10"


def _terminate(script: str, args: list[str], cwd: Path, env: dict[str, str],
               progress: str, reached: Callable[[], bool]) -> tuple[int, str]:
    """Run ``script``, send SIGTERM once ``reached()`` holds, return (exit status, stderr)."""
    with running(script, *args, cwd=cwd, env=env) as run:
        wait_for(reached, timeout=120, what=progress, while_alive=run)
        run.proc.send_signal(signal.SIGTERM)
        status = run.wait(60)
        return status, run.stderr


def test_sigterm_stops_seed_and_sync_cleanly_and_a_rerun_completes(devnet: Devnet,
                                                                   tmp_path: Path) -> None:
    settings = make_data(devnet, tmp_path, USERS, seed=61)
    data = Path(settings.data_dir)
    env = clean_env(CIC_BATCH_SIZE=BATCH)
    network = connect(settings)
    before = Holdings.read(network)

    seed = seed_args(data, devnet, "--batch-size", BATCH)
    status, stderr = _terminate("eth/seed.py", seed, tmp_path, env, "30 users confirmed",
                                lambda: users_in(data, "confirmed") >= 30)
    assert status != 0 and "Traceback" not in stderr, stderr
    confirmed = users_in(data, "confirmed")
    assert 30 <= confirmed < USERS, "SIGTERM landed after the run, not during it"
    # flushed: every user the state calls confirmed is registered and has its new/ record
    with open_state_store(settings) as store:
        done = [u.address for u in store.users("eth", [Status.CONFIRMED])]
    have = network.client.call_many([(network.accounts_index, ACCOUNTS_INDEX.fn("have"), (a,))
                                     for a in done])
    assert all(h is True for h in have)
    assert [a for a in done if not DataDir(data).new.has(a)] == []

    with running("eth/seed.py", *seed, cwd=tmp_path, env=env) as rerun:
        assert rerun.wait(180) == 0, rerun.report()
    assert users_in(data, "confirmed") == USERS

    sync = seed_args(data, devnet, "--timeout", "120", "--poll", "0.05")
    planned = planned_payments(data, USERS)
    # payments are confirmed a round at a time; SIGTERM lands while they are being sent
    status, stderr = _terminate("eth/sync.py", sync, tmp_path, env, "40 payments sent",
                                lambda: payments_in(data, "submitted", "confirmed") >= 40)
    assert status != 0 and "Traceback" not in stderr, stderr
    assert payments_in(data, "confirmed") < planned, "SIGTERM landed after the run"
    with running("eth/sync.py", *sync, cwd=tmp_path, env=env) as rerun:
        assert rerun.wait(180) == 0, rerun.report()
    assert payments_in(data, "confirmed") == planned
    assert_paid_exactly_once(settings, before)
