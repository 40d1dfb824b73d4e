"""A clean checkout stays clean: what the commands write by default is ignored by git.

The committed HEAD is cloned into a temporary directory (with the project's node_modules
linked in for anvil) and the commands that need no set-up run there with their defaults:
generate and validate (data directory ``out``), a devnet (``devnet``) with import, sync and
verify, and the demo (``demo``). ``git status`` must show nothing afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True,
                          timeout=120).stdout


def test_default_outputs_leave_a_fresh_clone_clean(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    _git("clone", "-q", "--no-hardlinks", str(ROOT), str(clone), cwd=tmp_path)
    if (ROOT / "node_modules").is_dir():
        (clone / "node_modules").symlink_to(ROOT / "node_modules")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIC_")}
    env["PYTHONPATH"] = str(clone)

    def cic_seed(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "cic_seeding.cli.main", *args], cwd=clone,
                              env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"cic-seed {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    assert "Usage: cic-seed" in cic_seed("--help")
    cic_seed("generate", "--seed", "5", "30")
    cic_seed("validate", "out")
    cic_seed("config", "show")
    cic_seed("devnet", "up")
    try:
        cic_seed("import", "eth", "--devnet", "devnet")
        cic_seed("sync", "eth", "--devnet", "devnet")
        cic_seed("verify", "out", "--devnet", "devnet")
    finally:
        cic_seed("devnet", "down")
    cic_seed("demo", "--users", "30")

    written = _git("status", "--porcelain", "--ignored", cwd=clone)
    for made in ("out/", "devnet/", "demo/"):
        assert f"!! {made}" in written, f"{made} was not written (or not ignored): {written}"
    assert _git("status", "--porcelain", cwd=clone) == "", written
