"""``cic-seed`` run in this process: the CLI's own code path, without a 0.5 s interpreter start.

Subprocess runs (tests.helpers.run_cli) stay for what needs a real process: the scripts, the
traceback with -vv, worker pools started from a fresh interpreter.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cic_seeding.cli.main import main


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str


InCli = Callable[..., Run]


@pytest.fixture()
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> Iterator[InCli]:
    """``cli(*args, env={...})`` runs cic-seed in an isolated environment: no CIC_* variables
    but ``env``, the working directory a fresh temporary one (so no ./config/cic-seed.toml)."""
    for var in [v for v in os.environ if v.startswith("CIC_")]:
        monkeypatch.delenv(var)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def run(*args: str, env: dict[str, str] | None = None) -> Run:
        with monkeypatch.context() as scoped:
            for name, value in (env or {}).items():
                scoped.setenv(name, value)
            capsys.readouterr()
            code = main(list(args))
            out = capsys.readouterr()
        return Run(code, out.out, out.err)

    yield run
    root.handlers[:] = handlers
    root.setLevel(level)
