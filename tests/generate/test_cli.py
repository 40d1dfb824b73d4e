"""The generator as a user runs it: one-line errors, exit codes, no tracebacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_cli, run_script


def test_script_and_subcommand_write_the_same(tmp_path: Path) -> None:
    a = run_script("create_import_users.py", "--dir", str(tmp_path / "a"), "--seed", "9", "30")
    b = run_cli("generate", "--dir", str(tmp_path / "b"), "--seed", "9", "30")
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert "wrote 30 users" in a.stdout
    assert (tmp_path / "a" / "users.csv").read_bytes() == (tmp_path / "b" / "users.csv").read_bytes()


@pytest.mark.parametrize("args,code,message", [
    (["0"], 2, "error: COUNT must be a positive number of users, got 0"),
    (["--locale", "xx_YY", "5"], 2, "error: unknown locale 'xx_YY'"),
    (["--chain-spec", "nope", "5"], 2, "error: malformed chain spec 'nope'"),
])
def test_bad_arguments(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    proc = run_cli("generate", "--dir", str(tmp_path / "d"), *args)
    assert proc.returncode == code
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), proc.stderr
    assert "Traceback" not in proc.stderr


def test_existing_directory_and_unwritable(tmp_path: Path) -> None:
    assert run_cli("generate", "--dir", str(tmp_path / "d"), "3").returncode == 0
    proc = run_cli("generate", "--dir", str(tmp_path / "d"), "3")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: data directory {tmp_path / 'd'} already exists; "
                                   "pass -f to append users to it or --reset to wipe it first")
    (tmp_path / "f").write_text("x")
    proc = run_cli("generate", "--dir", str(tmp_path / "f" / "d"), "3")
    assert proc.returncode == 1 and "cannot write the data directory" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_traceback_only_with_vv(tmp_path: Path) -> None:
    proc = run_cli("generate", "--dir", str(tmp_path / "d"), "-vv", "0")
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_reset_and_append_flags(tmp_path: Path) -> None:
    d = str(tmp_path / "d")
    assert run_cli("generate", "--dir", d, "--seed", "1", "3").returncode == 0
    assert run_cli("generate", "--dir", d, "-f", "2").returncode == 0
    assert len((tmp_path / "d" / "users.csv").read_text().splitlines()) == 5
    assert run_cli("generate", "--dir", d, "--reset", "--seed", "1", "1").returncode == 0
    assert len((tmp_path / "d" / "users.csv").read_text().splitlines()) == 1
