"""bench/run.py runs end to end and prints its table (a smoke test: no timing assertions)."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT


def test_pipeline_benchmark_prints_every_stage() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--users", "2000",
                             "--naive-sample", "100"], capture_output=True, text=True,
                            timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    table = result.stdout
    for stage in ("generate", "import+sync (eth)", "import+sync (eth, --batch-funder)",
                  "verify (4 chain checks)"):
        assert f"| {stage} " in table, table
    assert table.count("x ") >= 4  # every stage has its ratio to a baseline
