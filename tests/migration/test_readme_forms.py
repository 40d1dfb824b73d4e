"""Every command of the older data-seeding README, typed as it writes it (placeholders filled
in), against MIGRATING.md's devnet (``cic-seed devnet up --meta --custodial --ussd``): the
sovereign, custodial and USSD imports with their syncers (MIGRATING.md's worked example runs
them, sync first for eth), the metadata scripts, the pins and USSD data in both spellings, and
verify with an older config directory. Each flow ends with the ``cic-seed`` forms on the same
data directory, which find the work done and verify the same, line for line; the older
environment names alone are enough for verify; verify picks the importers from the data
directory."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from eth_utils import keccak

from cic_seeding.datadir import DataDir
from cic_seeding.importers import get_importer
from cic_seeding.state import FUND, open_state_store
from tests.custodial.world import (
    archived,
    assert_engine_txs_archived,
    assert_users_txs_archived,
)
from tests.helpers import ROOT
from tests.migration.conftest import USERS, OldWorld

Run = subprocess.CompletedProcess[str]


def ok(run: Run) -> Run:
    assert run.returncode == 0, f"rc {run.returncode}\n{run.stdout}\n{run.stderr}"
    return run


def checks_of(run: Run) -> dict[str, str]:
    """``{check: line}`` of a verify report's per-check lines."""
    out = {}
    for line in run.stdout.splitlines():
        head, sep, _ = line.partition(": ")
        if sep and " " not in head and not head.startswith(("note", "failures")):
            out[head] = line
    return out


def generate(world: OldWorld, directory: str) -> None:
    """Step 1 of the older README: ``create_import_users.py --gift-threshold ... --dir ...``."""
    ok(world.run("python", "create_import_users.py", "--gift-threshold", "50", "--dir",
                 directory, str(USERS)))


def verify_both_ways(world: OldWorld, directory: str, expect: dict[str, str]) -> Run:
    """Step 5 as the older README writes it, and ``cic-seed verify DIR --devnet``: both exit
    0 with the same report; ``expect`` maps checks to the line each must show."""
    old = ok(world.run("python", "verify.py", "-v", "-c", "config", "-r", world.registry,
                       "-p", world.eth_provider, "--token-symbol", "GFT", directory))
    new = ok(world.cic_seed("verify", directory))
    assert old.stdout == new.stdout
    lines = checks_of(old)
    for check, line in expect.items():
        assert lines.get(check) == line, old.stdout
    return old


@pytest.fixture(scope="module")
def example(old_world: OldWorld, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MIGRATING.md's worked example, run once by bash from a directory laid out like this
    checkout (its scripts and config/, and the devnet as devnet/); its directory."""
    where = tmp_path_factory.mktemp("example")
    text = (ROOT / "MIGRATING.md").read_text()
    block = text.split("<!-- worked-example -->\n```sh\n", 1)[1].split("```\n", 1)[0]
    for name in ("create_import_users.py", "create_import_pins.py", "verify.py", "eth",
                 "cic_eth", "cic_ussd", "cic_meta", "config"):
        (where / name).symlink_to(ROOT / name)
    (where / "devnet").symlink_to(old_world.devnet)
    env = {**os.environ, **old_world.env()}
    del env["CIC_KEYFILE_PASSWORD_FILE"]  # the example sets it
    log = where / "example.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["bash", "-c", block], cwd=where, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=900)
        finally:
            with contextlib.suppress(ProcessLookupError):  # what it left behind, if it failed
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    output = log.read_text()
    assert rc == 0, output
    reports = [line for line in output.splitlines() if "users of token GFT" in line]
    assert len(reports) == 4 and all(line.endswith("all ok") for line in reports), output
    assert "note: --redis-host-callback is not needed" in output
    return where


EVERY = f"{USERS}/{USERS}"
CHECKS = ("accounts_index", "balance", "faucet", "gas", "imported", "metadata",
          "metadata_phone", "metadata_custom", "metadata_preferences")
CUSTODIAL = ("custodial_key", "ussd", "ussd_pins")


def test_the_cic_seed_forms_find_the_worked_example_done(old_world: OldWorld,
                                                          example: Path) -> None:
    """After the older forms (sync first for eth, after the import for cic_eth and cic_ussd;
    the Node metadata scripts; pins and USSD data), ``cic-seed import`` and ``sync`` find
    nothing left to do, and verify with an older config directory reports what ``cic-seed
    verify --devnet`` reports, line for line, every check passing."""
    for name, importer, more in (("users", "eth", ("local_key",)),
                                 ("custodial", "cic_eth", CUSTODIAL),
                                 ("ussd", "cic_ussd", CUSTODIAL)):
        directory = str(example / name)
        again = ok(old_world.cic_seed("import", importer, directory))
        where = get_importer(importer).found_where
        assert f"{importer}: 0 users imported this run (0 {where}), {USERS} before" \
            in again.stdout
        paid = ok(old_world.cic_seed("sync", directory, "--timeout", "120"))
        assert f"sync {importer}: done: {EVERY} users paid" in paid.stdout
        report = verify_both_ways(old_world, directory,
                                  {c: f"{c}: {EVERY}" for c in (*CHECKS, *more)})
        if importer != "eth":
            assert "not applicable: local_key (custodial users)" in report.stdout
        assert_in_tx_dir(old_world, example / name, importer)


def assert_in_tx_dir(world: OldWorld, directory: Path, importer: str) -> None:
    """The older README's promise: every transaction made for a user -- registration, opening
    balance, faucet payout, gas gift, whoever signed it -- is saved raw in ``DIR/tx/``, named
    by its hash (the custodial engine's fetched from the node by the import and the syncer)."""
    settings = world.settings(directory)
    owed = sum(1 for b in DataDir(directory).balances().values() if b > 0)
    ledger = assert_users_txs_archived(settings, importer)  # registrations, the ledger's
    with open_state_store(settings) as store:
        targets = set(store.targets(importer)) if importer != "eth" else set()
        funds = [p.tx_hash for p in store.payments(importer, kind=FUND)]
    assert len(funds) == owed and all(funds)
    if importer == "eth":  # ours: signed here, saved before they were sent
        assert ledger == {"register": USERS, "fund": owed, "faucet": USERS, "gas": USERS}
    elif importer == "cic_ussd":  # the gateway's registrations (the engine's), paid as eth
        assert ledger == {"register": USERS, "fund": owed, "faucet": USERS, "gas": USERS}
        assert assert_engine_txs_archived(settings, world.engine_schema, targets) == \
            {"register": USERS}
    else:  # the engine signed every one, the opening balances as transfers
        assert ledger == {"register": USERS, "fund": owed}
        assert assert_engine_txs_archived(settings, world.engine_schema, targets) == {
            "register": USERS, "gas": USERS, "faucet": USERS, "transfer": owed}
        for tx_hash in funds:
            raw = archived(directory, str(tx_hash))
            assert raw is not None and "0x" + keccak(raw).hex() == tx_hash


def test_pins_and_ussd_data_in_the_plain_spelling(old_world: OldWorld, example: Path) -> None:
    """The worked example used the README's words (``pinsdir <pins dir>``, ``userdir <users
    dir>``); the older scripts' plain positionals name the same directories."""
    w = old_world
    custodial = str(example / "custodial")
    assert json.loads((example / "pins" / "pins.json").read_text())["data_dir"] == \
        str(Path(custodial).resolve())
    pins = ok(w.run("python", "create_import_pins.py", "-c", "config", "-v", "--userdir",
                    custodial, "pins-plain"))
    assert pins.stdout.strip() == "pins-plain/pins.csv"
    devnet = {"CIC_DEVNET_DIR": str(w.devnet)}
    for script, name, where in (("import_pins", "ussd-pins", "pins-plain"),
                                ("import_ussd_data", "ussd-data", custodial)):
        again = ok(w.run("python", f"cic_ussd/{script}.py", "-c", "config", "-v", where,
                         env=devnet))  # the same data directory: nothing left to do
        assert f"{name}: 0 users imported this run (0 already on chain), {USERS} before" \
            in again.stdout


def test_the_older_environment_names_alone_verify(old_world: OldWorld, example: Path) -> None:
    """verify.py with nothing but the older environment names, bare or behind
    CONFINI_ENV_PREFIX, reports what ``cic-seed verify --devnet`` does; config show names
    them as the sources."""
    w = old_world
    custodial = str(example / "custodial")
    report = ok(w.cic_seed("verify", custodial))
    for prefix in ("", "CIC_OLD"):
        alone = ok(w.run("python", "verify.py", custodial, env=w.older_env(prefix)))
        assert alone.stdout == report.stdout
    shown = ok(w.cli("config", "show", env=w.older_env("CIC_OLD")))
    assert "(env CIC_OLD_RPC_PROVIDER)" in shown.stdout
    assert "(env CIC_OLD_CELERY_BROKER_URL)" in shown.stdout


def test_verify_picks_each_importer_of_the_data_directory(old_world: OldWorld) -> None:
    """The same users imported twice, as sovereign (eth) and as custodial (cic_eth) accounts:
    verify without --importer checks each importer's users with that importer's checks,
    exactly as verifying each alone does; sync without NAME refuses to guess between them."""
    w = old_world
    generate(w, "both")
    for script in ("eth", "cic_eth"):
        ok(w.run("python", f"{script}/seed.py", "-y", w.key_file, "both", env=w.older_env()))
        ok(w.run(f"{script}/sync.py", "-y", w.key_file, "both", env=w.older_env()))
    both = ok(w.cic_seed("verify", "both", "--skip-metadata", "--format", "json"))
    got = json.loads(both.stdout)
    assert got["importer"] == "cic_eth + eth"
    for importer in ("eth", "cic_eth"):
        alone = json.loads(ok(w.cic_seed("verify", "both", "--skip-metadata", "--importer",
                                         importer, "--format", "json")).stdout)
        assert alone["importer"] == importer
        for check, result in alone["checks"].items():
            mine = got["checks"][f"{importer}:{check}"]
            assert (mine["status"], mine["ok"], mine["failed"], mine["not_applicable"]) == \
                (result["status"], result["ok"], result["failed"], result["not_applicable"])
    statuses = {c: r["status"] for c, r in got["checks"].items()}
    assert statuses["eth:local_key"] == statuses["cic_eth:custodial_key"] == "passed"
    assert statuses["eth:custodial_key"] == statuses["cic_eth:local_key"] == "not_applicable"
    assert got["ok"]
    keys = json.loads(ok(w.cic_seed("verify", "both", "--include", "custodial_key",
                                    "--format", "json")).stdout)
    assert list(keys["checks"]) == ["cic_eth:custodial_key"]
    assert keys["checks"]["cic_eth:custodial_key"]["ok"] == USERS
    assert any(n.startswith("importer 'eth' not verified: no checks left to run")
               for n in keys["notes"]), keys["notes"]
    guess = w.cic_seed("sync", "both")
    assert guess.returncode == 2
    assert "error: the users of both were imported by cic_eth and eth" in guess.stderr


