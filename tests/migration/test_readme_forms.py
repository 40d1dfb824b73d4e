"""Every command of the older data-seeding README, typed as it writes it (placeholders filled
in), against MIGRATING.md's devnet (``cic-seed devnet up --meta --custodial --ussd``): the
sovereign, custodial and USSD imports with their syncers, the metadata scripts, the pins and
USSD data, and verify. Each flow ends with the ``cic-seed`` forms on the same data directory,
which find the work done and verify the same, line for line; the older environment names
alone are enough for verify; verify picks the importers from the data directory."""

from __future__ import annotations

import json
import subprocess

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


def import_metadata(world: OldWorld, directory: str) -> None:
    """Step 4: the three Node scripts (now the Python import; the metadata server's URL by its
    older name, its write token by this toolkit's: the older scripts signed with PGP)."""
    env = {"META_URL": world.meta_url, "CIC_META_TOKEN_FILE": world.meta_token_file}
    first = ok(world.run("node", "cic_meta/import_meta.js", directory, str(USERS), env=env))
    assert f"cic_meta: {USERS} users imported this run" in first.stdout
    for script in ("import_meta_phone.js", "import_meta_preferences.js"):
        again = ok(world.run("node", f"cic_meta/{script}", directory, str(USERS), env=env))
        assert f"cic_meta: 0 users imported this run (0 already on chain), {USERS} before" \
            in again.stdout


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


def test_sovereign_readme_forms(old_world: OldWorld) -> None:
    """Steps 1, 3 (sync first, then Alternative 1), 4 and 5."""
    w = old_world
    generate(w, "users")
    sync = w.popen("eth/sync.py", "-i", w.chain_spec, "-y", w.key_file, "-p", w.eth_provider,
                   "-r", w.registry, "users", log=w.work / "eth-sync.log")
    try:
        seed = ok(w.run("python", "eth/seed.py", "-v", "-p", w.eth_provider, "-r", w.registry,
                        "-y", w.key_file, "users"))
        assert f"eth: {USERS} users imported this run" in seed.stdout
        assert sync.wait(timeout=300) == 0, (w.work / "eth-sync.log").read_text()
    finally:
        if sync.poll() is None:
            sync.kill()
            sync.wait()
    assert f"sync eth: done: {USERS}/{USERS} users paid" in (w.work / "eth-sync.log").read_text()
    import_metadata(w, "users")
    every = f"{USERS}/{USERS}"
    verify_both_ways(w, "users", {c: f"{c}: {every}" for c in (
        "accounts_index", "balance", "faucet", "gas", "local_key", "imported", "metadata",
        "metadata_phone", "metadata_custom", "metadata_preferences")})

    # the cic-seed forms find nothing left to do
    again = ok(w.cic_seed("import", "eth", "users"))
    assert f"eth: 0 users imported this run (0 already on chain), {USERS} before" in again.stdout
    paid = ok(w.cic_seed("sync", "eth", "users", "--timeout", "120"))
    assert f"{USERS}/{USERS} users paid" in paid.stdout


def test_custodial_pins_and_ussd_data_readme_forms(old_world: OldWorld) -> None:
    """Step 3 Alternative 2 (cic_eth) with its syncer, step 4 (metadata, then the pins and
    USSD data in both spellings of the older README) and step 5; then the older environment
    names alone (with and without CONFINI_ENV_PREFIX) verify the same."""
    w = old_world
    generate(w, "custodial")
    older = w.older_env()
    seed = ok(w.run("python", "cic_eth/seed.py", "-v", "--redis-host-callback", "redis",
                    "custodial", env=older))
    assert f"cic_eth: {USERS} users imported this run" in seed.stdout
    assert "note: --redis-host-callback is not needed" in seed.stderr
    sync = ok(w.run("cic_eth/sync.py", "-i", w.chain_spec, "-y", w.key_file, "-p",
                    w.eth_provider, "-r", w.registry, "custodial", env=older))
    assert f"sync cic_eth: done: {USERS}/{USERS} users paid" in sync.stdout
    import_metadata(w, "custodial")

    # the pins and USSD data: the README's words (pinsdir, userdir) and the plain positionals
    devnet = {"CIC_DEVNET_DIR": str(w.devnet)}
    pins = ok(w.run("python", "create_import_pins.py", "-c", "config", "-v", "--userdir",
                    "custodial", "pinsdir", "pins"))
    assert pins.stdout.strip() == "pins/pins.csv"
    assert json.loads((w.work / "pins" / "pins.json").read_text())["users"] == USERS
    ok(w.run("python", "create_import_pins.py", "-c", "config", "-v", "--userdir", "custodial",
             "pins-plain"))
    for script, forms in (("import_pins", (("pinsdir", "pins"), ("pins-plain",))),
                          ("import_ussd_data", (("userdir", "custodial"), ("custodial",)))):
        name = "ussd-pins" if script == "import_pins" else "ussd-data"
        first = ok(w.run("python", f"cic_ussd/{script}.py", "-c", "config", "-v", *forms[0],
                         env=devnet))
        assert f"{name}: {USERS} users imported this run" in first.stdout
        again = ok(w.run("python", f"cic_ussd/{script}.py", "-c", "config", "-v", *forms[1],
                         env=devnet))  # the same data directory: nothing left to do
        assert f"{name}: 0 users imported this run (0 already on chain), {USERS} before" \
            in again.stdout

    every = f"{USERS}/{USERS}"
    report = verify_both_ways(w, "custodial", {c: f"{c}: {every}" for c in (
        "accounts_index", "balance", "custodial_key", "imported", "metadata", "ussd",
        "ussd_pins")})
    assert "not applicable: local_key (custodial users)" in report.stdout

    # the older environment names alone are enough for verify
    for prefix in ("", "CIC_OLD"):
        alone = ok(w.run("python", "verify.py", "custodial", env=w.older_env(prefix)))
        assert alone.stdout == report.stdout
    shown = ok(w.cli("config", "show", env=w.older_env("CIC_OLD")))
    assert "(env CIC_OLD_RPC_PROVIDER)" in shown.stdout
    assert "(env CIC_OLD_CELERY_BROKER_URL)" in shown.stdout


def test_ussd_readme_forms(old_world: OldWorld) -> None:
    """Step 3 Alternative 3 (cic_ussd, the gateway named by --ussd-provider), its syncer,
    step 4 and step 5."""
    w = old_world
    generate(w, "ussd")
    devnet = {"CIC_DEVNET_DIR": str(w.devnet)}
    seed = ok(w.run("python", "cic_ussd/seed.py", "-v", "--ussd-provider", w.ussd_endpoint,
                    "ussd", env=devnet))
    assert f"cic_ussd: {USERS} users imported this run" in seed.stdout
    sync = ok(w.run("cic_ussd/sync.py", "-i", w.chain_spec, "-y", w.key_file, "-p",
                    w.eth_provider, "-r", w.registry, "ussd", env=w.older_env()))
    assert f"sync cic_ussd: done: {USERS}/{USERS} users paid" in sync.stdout
    import_metadata(w, "ussd")
    every = f"{USERS}/{USERS}"
    verify_both_ways(w, "ussd", {c: f"{c}: {every}" for c in (
        "accounts_index", "balance", "custodial_key", "imported", "metadata", "ussd",
        "ussd_pins")})


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
    guess = w.cic_seed("sync", "both")
    assert guess.returncode == 2
    assert "error: the users of both were imported by cic_eth and eth" in guess.stderr
