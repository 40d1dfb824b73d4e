"""bench/run.py runs end to end and prints its table (a smoke test: no timing assertions)."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT

STAGE_ROWS = ("generate", "import+sync (eth)", "import+sync (eth, --batch-funder)",
              "verify (4 chain checks)", "metadata import (cic_meta, 4 docs/user)",
              "custodial import (cic_eth, 1 engine worker)",
              "import (eth, --executor celery, 1 worker)",
              "import (eth, --executor celery, 2 workers)")


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), *args],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_pipeline_benchmark_prints_every_stage() -> None:
    # every stage; the metadata, custodial and celery imports on 200 users keep CI short
    result = bench("--users", "2000", "--naive-sample", "100", "--service-users", "200")
    assert result.returncode == 0, result.stderr[-2000:]
    table = result.stdout
    for stage in STAGE_ROWS:
        assert f"| {stage} " in table, table
    rows = [line for line in table.splitlines() if line.startswith("| 2")]
    assert len(rows) == len(STAGE_ROWS)
    for row in rows:  # every figure has its ratio to a baseline of the same run
        ratio = row.split("|")[5].strip()
        assert ratio.endswith("x") and float(ratio[:-1]) > 0, row


def test_stages_pick_a_subset() -> None:
    result = bench("--users", "300", "--stages", "generate")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| generate " in result.stdout and "import" not in result.stdout


def test_unknown_or_unsatisfiable_stages_are_one_line() -> None:
    unknown = bench("--stages", "generate,sead")
    assert unknown.returncode != 0
    assert unknown.stderr.strip() == ("error: unknown stage sead; valid stages: generate, seed, "
                                      "batch, verify, meta, custodial, celery")
    alone = bench("--stages", "verify")
    assert alone.returncode != 0
    assert "stage verify checks the users of stage seed or batch" in alone.stderr


def test_end_to_end_benchmark_prints_each_stage_and_the_targets() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "e2e.py"), "--users", "300"],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {line.split("|")[1].strip(): line for line in result.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| stage")}
    assert set(rows) == {"generate", "import", "sync", "verify", "end to end"}, result.stdout
    assert "targets: under 300s (" in result.stdout and "peak RSS under 500 MB (" in result.stdout
