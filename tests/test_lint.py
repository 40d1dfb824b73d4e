"""The code gates: ruff clean (library, devnet, benchmarks, tests) and mypy clean."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_ruff_is_clean() -> None:
    result = _run("ruff", "check", "--no-cache", "cic_seeding", "cic_devnet", "bench", "tests",
                  "examples")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    result = _run("mypy", "--no-incremental", "cic_seeding", "cic_devnet")
    assert result.returncode == 0, result.stdout + result.stderr
