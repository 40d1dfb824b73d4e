"""The generator as a user runs it: one-line errors, exit codes, no tracebacks, reproducibility."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.generate._incli import InCli
from tests.helpers import run_cli, run_script, tree_digest


def one_line_error(proc: object, code: int) -> str:
    """The single stderr line of a failed run (asserting exit code and no traceback)."""
    returncode, stderr = proc.returncode, proc.stderr  # type: ignore[attr-defined]
    assert returncode == code, (returncode, stderr)
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def test_script_and_subcommand_write_the_same(tmp_path: Path) -> None:
    a = run_script("create_import_users.py", "--dir", str(tmp_path / "a"), "--seed", "9", "30")
    b = run_cli("generate", "--dir", str(tmp_path / "b"), "--seed", "9", "30")
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert "wrote 30 users" in a.stdout
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")


def test_workers_1_and_2_write_identical_trees(cli: InCli, tmp_path: Path) -> None:
    common = ["--seed", "5", "--transactions", "60", "--epoch", "1600000000", "--tag", "x",
              "--tag", "y", "--decimals", "2", "-q", "520"]  # 520 users: three worker chunks
    one = cli("generate", "--dir", str(tmp_path / "w1"), "--workers", "1", *common)
    two = cli("generate", "--dir", str(tmp_path / "w2"), "--workers", "2", *common)
    assert one.returncode == two.returncode == 0, one.stderr + two.stderr
    assert one.stdout == two.stdout == ""  # -q
    a, b = tree_digest(tmp_path / "w1"), tree_digest(tmp_path / "w2")
    assert len(a) == 2 * 520 + 5 and a == b
    valid = cli("validate", str(tmp_path / "w2"))
    assert valid.returncode == 0 and valid.stdout.rstrip().endswith("\nvalid"), valid.stdout


def test_without_seed_the_manifest_seed_reproduces_the_run(cli: InCli, tmp_path: Path) -> None:
    first = cli("generate", "--dir", str(tmp_path / "a"), "--transactions", "10", "25")
    assert first.returncode == 0, first.stderr
    seed = json.loads((tmp_path / "a" / "manifest.json").read_text())["seed"]
    assert f"seed {seed}," in first.stdout
    again = cli("generate", "--dir", str(tmp_path / "b"), "--transactions", "10",
                    "--seed", str(seed), "25")
    assert again.returncode == 0, again.stderr
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")


@pytest.mark.parametrize("args,code,message", [
    (["0"], 2, "error: COUNT must be a positive number of users, got 0"),
    (["-3"], 2, "error: COUNT must be a positive number of users, got -3"),
    (["--", "-3"], 2, "error: COUNT must be a positive number of users, got -3"),
    (["100000001"], 2, "error: COUNT must be at most 100,000,000 (the phone number space)"),
    (["abc"], 2, "error: Invalid value for 'COUNT': 'abc' is not a valid integer."),
    ([], 2, "error: Missing argument 'COUNT'."),
    (["--sed", "1", "5"], 2, "error: No such option '--sed'. (Did you mean one of"),
    (["--locale", "xx_YY", "5"], 2, "error: unknown locale 'xx_YY'; e.g. en_KE, sw, en_US"),
    (["--locale", "en_KX", "5"], 2, "error: unknown locale 'en_KX'; did you mean"),
    (["--chain-spec", "nope", "5"], 2,
     "error: malformed chain spec 'nope': expected engine:fork:network_id:common_name"),
    (["--chain-spec", "evm:byzantium:x:bloxberg", "5"], 2, "error: malformed chain spec"),
    (["--decimals", "37", "5"], 2, "error: --decimals must be between 0 and 36, got 37"),
    (["--gift-threshold", "-1", "5"], 2, "error: --gift-threshold must be >= 0, got -1"),
    (["--transactions", "-1", "5"], 2, "error: --transactions must be >= 0, got -1"),
    (["--transactions", "3", "1"], 2, "error: --transactions needs at least two users"),
    (["--workers", "-1", "5"], 2, "error: --workers must be >= 0 (0: one per core), got -1"),
    (["--seed", str(2**127), "5"], 2, "error: --seed must be between"),
    (["--epoch", "5", "5"], 2, "error: --epoch must be a unix time between"),
    (["--tag", "a,b", "5"], 2, "error: tag 'a,b' must be non-empty"),
    (["--reset", "-f", "5"], 2, "error: --reset and -f exclude each other"),
])
def test_bad_arguments(cli: InCli, tmp_path: Path, args: list[str], code: int,
                       message: str) -> None:
    proc = cli("generate", "--dir", str(tmp_path / "d"), *args)
    assert one_line_error(proc, code).startswith(message)
    assert not (tmp_path / "d").exists()


def test_malformed_chain_spec_from_the_environment(cli: InCli, tmp_path: Path) -> None:
    proc = cli("generate", "--dir", str(tmp_path / "d"), "5",
                   env={"CIC_CHAIN_SPEC": "evm:byzantium:8996"})
    assert one_line_error(proc, 2).startswith("error: malformed chain spec 'evm:byzantium:8996'")


def test_existing_directory_without_f_or_reset(cli: InCli, tmp_path: Path) -> None:
    assert cli("generate", "--dir", str(tmp_path / "d"), "3").returncode == 0
    before = tree_digest(tmp_path / "d")
    proc = cli("generate", "--dir", str(tmp_path / "d"), "3")
    assert one_line_error(proc, 2) == (
        f"error: data directory {tmp_path / 'd'} already exists; "
        "pass -f to append users to it or --reset to wipe it first")
    assert tree_digest(tmp_path / "d") == before


def test_unwritable_directory(cli: InCli, tmp_path: Path) -> None:
    if os.geteuid() == 0:  # root ignores mode bits: a regular file as parent blocks even root
        (tmp_path / "ro").write_text("a file, not a directory")
        target, reason = tmp_path / "ro" / "d", "Not a directory"
    else:
        (tmp_path / "ro").mkdir(mode=0o500)
        target, reason = tmp_path / "ro" / "d", "Permission denied"
    proc = cli("generate", "--dir", str(target), "3")
    assert one_line_error(proc, 1) == (
        f"error: cannot write the data directory {target}: {reason}; choose a writable --dir")


def test_unwritable_under_a_file_even_for_root(tmp_path: Path) -> None:
    proc = run_cli("generate", "--dir", "/dev/null/x", "3")
    assert one_line_error(proc, 1).startswith("error: cannot write the data directory /dev/null/x")


def test_append_with_another_seed_or_decimals_is_refused(cli: InCli, tmp_path: Path) -> None:
    d = str(tmp_path / "d")
    assert cli("generate", "--dir", d, "--seed", "1", "--decimals", "2", "3").returncode == 0
    before = tree_digest(tmp_path / "d")
    proc = cli("generate", "--dir", d, "-f", "--seed", "2", "3")
    assert one_line_error(proc, 2) == (
        f"error: {d} was generated with --seed 1; appending with --seed 2 would mix two "
        "datasets; drop --seed to keep the directory's value, or pass --reset to start over")
    proc = cli("generate", "--dir", d, "-f", "--decimals", "6", "3")
    assert one_line_error(proc, 2).startswith(
        f"error: {d} was generated with --decimals 2; appending with --decimals 6")
    assert tree_digest(tmp_path / "d") == before
    # options left out (or equal) take the manifest's values
    ok = cli("generate", "--dir", d, "-f", "--seed", "1", "3")
    assert ok.returncode == 0, ok.stderr
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert (manifest["count"], manifest["seed"], manifest["decimals"]) == (6, 1, 2)


def test_append_to_a_missing_directory(cli: InCli, tmp_path: Path) -> None:
    proc = cli("generate", "--dir", str(tmp_path / "none"), "-f", "3")
    assert one_line_error(proc, 1) == (
        f"error: cannot append to {tmp_path / 'none'}: it does not exist; drop -f to create it")


def test_traceback_only_with_vv(tmp_path: Path) -> None:
    quiet = run_cli("generate", "--dir", str(tmp_path / "d"), "0")
    assert "Traceback" not in quiet.stderr
    loud = run_cli("generate", "--dir", str(tmp_path / "d"), "-vv", "0")
    assert loud.returncode == 2 and "Traceback" in loud.stderr and "UsageError" in loud.stderr
    assert loud.stderr.strip().splitlines()[-1] == (
        "error: COUNT must be a positive number of users, got 0")


def test_append_and_reset(cli: InCli, tmp_path: Path) -> None:
    d = str(tmp_path / "d")
    assert cli("generate", "--dir", d, "--seed", "1", "3").returncode == 0
    old = {p: h for p, h in tree_digest(tmp_path / "d").items() if p.startswith(("src", "phone"))}
    appended = cli("generate", "--dir", d, "-f", "2")
    assert appended.returncode == 0, appended.stderr
    assert "indices 3..4" in appended.stdout
    now = tree_digest(tmp_path / "d")
    assert all(now[p] == h for p, h in old.items())
    rows = (tmp_path / "d" / "users.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["0", "1", "2", "3", "4"]
    assert len({r.split(",")[2] for r in rows}) == 5
    assert cli("validate", d).returncode == 0
    assert cli("generate", "--dir", d, "--reset", "--seed", "1", "1").returncode == 0
    assert len((tmp_path / "d" / "users.csv").read_text().splitlines()) == 1
    assert sum(1 for p in tree_digest(tmp_path / "d") if p.startswith("src")) == 1


def test_reset_refuses_a_foreign_directory(cli: InCli, tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("keep me")
    proc = cli("generate", "--dir", str(tmp_path / "home"), "--reset", "3")
    assert one_line_error(proc, 2).startswith(
        f"error: --reset refuses to wipe {tmp_path / 'home'}: it has no manifest.json")
    assert (tmp_path / "home" / "notes.txt").read_text() == "keep me"
