"""Importer conformance: every registered importer passes the same scenarios in its own world.

Parametrized over :func:`cic_seeding.importers.importer_names` -- an importer registered
without a world in :data:`tests.importers.worlds.WORLDS` fails here, so a new importer is
covered from the day it is registered. Each world runs the importer for real against the
services it needs (tests/importers/worlds.py); the scenarios, the same for every importer:

* full run -- every user imported, the state store records each one pending -> submitted ->
  confirmed (with its target and submission reference), the backend holds each user once;
* resume -- a second run imports nothing and changes nothing: state store, backend totals
  (no transaction, document or account more), the data directory;
* quarantine -- one user's record broken (the per-user record the importer reads: its src/
  person record, or what the world names instead, see :attr:`World.corruption`): that user
  fails with a reason naming it, every other user is imported, the run is not ok;
* kill -9 -- ``cic-seed import NAME`` killed with SIGKILL at seeded points of a run
  (tests/faults/kills.py), then rerun to the end: every user imported exactly once;
* progress -- the progress callback reports every user, batch by batch, each report after
  the state store recorded it; the result counts add up.

About a minute on 2 cores for all six importers (20 to 40 users each)::

    python -m pytest -q tests/importers/test_conformance.py

``CIC_TEST_FAULT_SEED=N`` picks other kill points (a failure names its point).
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cic_seeding.datadir import DataDir
from cic_seeding.importers import ImportResult, get_importer, importer_names
from cic_seeding.state import Status, UserState, norm
from cic_seeding.state.sqlite import SqliteStateStore
from tests.e2e.procs import CLI
from tests.faults.kills import FAULT_SEED, Tally, kill_at, plan, run_to_end, state_count
from tests.helpers import tree_digest
from tests.importers.worlds import WORLDS, World

#: Kill points per importer in the kill -9 scenario.
KILLS = 2
#: Index of the user the quarantine scenario breaks (a sovereign one in the imported_datadir
#: worlds: index % 3 != 0).
VICTIM = 4
PENDING, SUBMITTED, CONFIRMED, FAILED = (Status.PENDING, Status.SUBMITTED, Status.CONFIRMED,
                                         Status.FAILED)
#: What a user passes through in a first run that imports it.
FRESH = [PENDING, SUBMITTED, CONFIRMED]


def seed_of(world: World, scenario: int) -> int:
    """A generator seed of the world's own per scenario: no two data directories share users
    (or phones) on the services the worlds share."""
    return int(hashlib.sha256(world.name.encode()).hexdigest()[:6], 16) * 10 + scenario


@pytest.fixture(scope="module", params=importer_names())
def world(request: pytest.FixtureRequest) -> World:
    make = WORLDS.get(request.param)
    if make is None:
        pytest.fail(f"importer {request.param!r} is registered but has no conformance world: "
                    "add one to tests/importers/worlds.py")
    return make(request)


def test_every_registered_importer_has_a_world() -> None:
    assert sorted(WORLDS) == importer_names()


# --- running an importer in this process ---------------------------------------------------------


class RecordingStore(SqliteStateStore):
    """The real SQLite state store of a data directory, noting each status every user passes
    through (``paths``: user address, 0x lower -> statuses in order)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.paths: dict[str, list[Status]] = {}

    def _note(self, addresses: Iterable[str], status: Status) -> None:
        for a in addresses:
            self.paths.setdefault(norm(a), []).append(status)

    def add_users(self, importer: str, users: Iterable[tuple[int, str]]) -> int:
        users = list(users)
        known = self.addresses(importer)
        added = super().add_users(importer, users)
        self._note((a for _, a in users if norm(a) not in known), PENDING)
        return added

    def mark_submitted(self, importer: str,
                       items: Iterable[tuple[str, str, str, str | None]]) -> None:
        items = list(items)
        super().mark_submitted(importer, items)
        self._note((i[0] for i in items), SUBMITTED)

    def mark_confirmed(self, importer: str, items: Iterable[tuple[str, str | None]]) -> None:
        items = list(items)
        super().mark_confirmed(importer, items)
        self._note((i[0] for i in items), CONFIRMED)

    def mark_failed(self, importer: str, items: Iterable[tuple[str, str]]) -> None:
        items = list(items)
        super().mark_failed(importer, items)
        self._note((i[0] for i in items), FAILED)


@dataclass
class Run:
    result: ImportResult
    paths: dict[str, list[Status]]
    #: (users reported, users the store had settled -- confirmed or failed -- at that moment)
    progress: list[tuple[int, int]] = field(default_factory=list)


def run_import(world: World, data: DataDir) -> Run:
    """One run of the world's importer on ``data`` (a real store, its transitions noted)."""
    store = RecordingStore(data.root / "state.db")
    calls: list[tuple[int, int]] = []

    def progress(n: int) -> None:
        counts = store.counts(world.name)
        calls.append((n, counts[CONFIRMED] + counts[FAILED]))

    importer = get_importer(world.name)(world.settings(data), store=store, progress=progress)
    try:
        result = importer.run()
    finally:
        importer.close()
        store.close()
    return Run(result, store.paths, calls)


def stored(world: World, data: DataDir) -> list[UserState]:
    with SqliteStateStore(data.root / "state.db") as store:
        return store.users(world.name)


def targets_of(states: Iterable[UserState]) -> dict[str, str]:
    """user -> target of the confirmed users."""
    return {s.address: s.target for s in states if s.status is CONFIRMED and s.target}


def growth(world: World, before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in world.per_user}


def data_files(data: DataDir) -> dict[str, str]:
    """sha256 of every file of the data directory but the state store's."""
    return {p: h for p, h in tree_digest(data.root).items()
            if not os.path.basename(p).startswith("state.db")}


# --- full run, resume, progress ------------------------------------------------------------------


@dataclass
class Imported:
    """One full run of the world's importer, shared by the scenarios that look at it."""

    data: DataDir
    run: Run
    before: dict[str, int]
    after: dict[str, int]


@pytest.fixture(scope="module")
def imported(world: World, tmp_path_factory: pytest.TempPathFactory) -> Imported:
    data = world.make_data(tmp_path_factory.mktemp(f"{world.name}-full"), seed_of(world, 1))
    before = world.counters()
    run = run_import(world, data)
    return Imported(data, run, before, world.counters())


def test_full_run_imports_every_user(world: World, imported: Imported) -> None:
    n, result = world.users, imported.run.result
    assert result.ok, result.render_text()
    assert (result.total, result.submitted, result.confirmed, result.failed,
            result.found_on_chain, result.done_before, result.left) == (n, n, n, 0, 0, 0, 0)

    users = {norm(u.address) for u in imported.data.users()}
    assert imported.run.paths == {u: FRESH for u in users}
    states = stored(world, imported.data)
    assert {s.address for s in states} == users
    assert [s.address for s in states if (s.status, s.attempts, s.reason) != (CONFIRMED, 1, None)
            or not s.target or not s.txs] == []  # each: confirmed, sent once, its reference kept

    targets = targets_of(states)
    assert len(set(targets.values())) == n, "two users share a target"
    assert world.held(imported.data) == world.expected(imported.data, targets)
    assert growth(world, imported.before, imported.after) == {
        k: v * n for k, v in world.per_user.items()}


def test_resume_imports_nothing_and_changes_nothing(world: World, imported: Imported) -> None:
    data = imported.data

    def state() -> tuple[Any, ...]:
        return (stored(world, data), world.held(data), world.counters(),
                world.extra_state(data), data_files(data))

    before = state()
    again = run_import(world, data)
    result = again.result
    assert result.ok, result.render_text()
    assert (result.done_before, result.submitted, result.confirmed, result.found_on_chain,
            result.failed) == (world.users, 0, 0, 0, 0)
    assert again.paths == {} and again.progress == []
    assert result.render_text().startswith(
        f"{world.name}: 0 users imported this run{_found(world, 0)}, {world.users} before, "
        "0 failed, 0 left")
    after = state()
    for what, was, now in zip(("state store", "backend", "backend totals", "backend rows",
                               "data directory"), before, after, strict=True):
        assert now == was, f"the rerun changed the {what}"


def test_progress_is_reported_per_batch_after_the_store(world: World, imported: Imported) -> None:
    calls = imported.run.progress
    reported = [n for n, _ in calls]
    # one report per batch as it settles, every user in one of them
    assert len(reported) == math.ceil(world.users / world.batch_size), calls
    assert sum(reported) == world.users and max(reported) <= world.batch_size
    # each report comes once the state store has the users it reports
    running = [sum(reported[:i + 1]) for i in range(len(reported))]
    assert [settled for _, settled in calls] == running
    result = imported.run.result
    assert result.confirmed + result.found_on_chain + result.failed == sum(reported)
    assert result.render_text().startswith(
        f"{world.name}: {world.users} users imported this run{_found(world, 0)}, 0 before, "
        "0 failed, 0 left")


def _found(world: World, n: int) -> str:
    """The summary's "(n already on chain)", as the importer words it (or not at all)."""
    where = get_importer(world.name).found_where
    return f" ({n} {where})" if where else ""


# --- quarantine -----------------------------------------------------------------------------------


def test_one_broken_record_fails_that_user_only(world: World, tmp_path: Path) -> None:
    n = world.users
    data = world.make_data(tmp_path, seed_of(world, 2))
    victim = list(data.users())[VICTIM]
    why = world.corrupt(data, victim)  # what is broken: world.corruption
    before = world.counters()
    run = run_import(world, data)
    result = run.result

    assert not result.ok
    assert (result.failed, result.confirmed, result.total) == (1, n - 1, n), result.render_text()
    ((address, reason),) = result.failures
    assert norm(address) == norm(victim.address) and why in reason, (world.corruption, reason)

    states = {s.address: s for s in stored(world, data)}
    bad = states.pop(norm(victim.address))
    assert (bad.status, bad.reason) == (FAILED, reason)
    assert {s.status for s in states.values()} == {CONFIRMED}
    path = run.paths[norm(victim.address)]
    assert path[0] == PENDING and path[-1] == FAILED and CONFIRMED not in path
    assert {a: p for a, p in run.paths.items() if a != norm(victim.address)} == {
        a: FRESH for a in states}

    assert world.held(data) == world.expected(data, targets_of(states.values()))
    assert growth(world, before, world.counters()) == {
        k: v * (n - 1) for k, v in world.per_user.items()}
    assert sum(n for n, _ in run.progress) == n  # the failed user is reported too


# --- kill -9 --------------------------------------------------------------------------------------

SUMMARY = re.compile(r"^(\S+): (\d+) users imported this run(?: \((\d+) [^)]+\))?, (\d+) "
                     r"before, 0 failed, 0 left", re.M)


def test_killed_with_sigkill_and_rerun_imports_each_user_once(world: World,
                                                              tmp_path: Path) -> None:
    n = world.users
    data = world.make_data(tmp_path, seed_of(world, 3))
    args, env = world.cli(data)
    command = ["import", world.name, *args]
    before = world.counters()
    tally = Tally(world.name)
    points = plan(random.Random(FAULT_SEED + seed_of(world, 3)), world.probes(data), 2, n // 2,
                  KILLS)
    kill_at(CLI, command, points, cwd=tmp_path, env=env, tally=tally)
    assert tally.faults == KILLS and tally.at_startup < KILLS, tally.points  # mid-run kills
    assert state_count(data.root, world.name, "confirmed") < n, "nothing left for the rerun"

    run = run_to_end(CLI, command, cwd=tmp_path, env=env, tally=tally)
    summary = SUMMARY.search(run.stdout)
    assert summary is not None, run.report()
    name, imported, _, done_before = summary.groups()
    assert name == world.name and int(imported) + int(done_before) == n, run.stdout

    states = stored(world, data)
    assert len(states) == n and {s.status for s in states} == {CONFIRMED}, points
    targets = targets_of(states)
    assert len(set(targets.values())) == n, "two users share a target"
    assert world.held(data) == world.expected(data, targets), f"kill points {points}"
    assert growth(world, before, world.counters()) == {
        k: v * n for k, v in world.per_user.items()}, f"kill points {points}"
