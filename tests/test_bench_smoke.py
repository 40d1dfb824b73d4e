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


def test_node_client_benchmark_prints_every_workload_and_client_and_a_verdict() -> None:
    # tiny sizes, one round; --default-middleware so web3's default set-up runs too
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "node_client.py"), "--reads", "40", "--sends",
         "12", "--logs", "50", "--batch", "16", "--rounds", "1", "--default-middleware"],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in result.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| workload")]
    clients: dict[str, set[str]] = {}
    for workload, _work, client, _ms, _best, _rate, ratio, _cpu, cpu_ratio in rows:
        clients.setdefault(workload, set()).add(client)
        for figure in (ratio, cpu_ratio):  # web3 / ours, measured in this run
            assert figure.split()[0].endswith("x") and float(figure.split()[0][:-1]) > 0, rows
    api = {"web3 API, no middleware", "web3 API, default middleware"}
    provider = "web3 HTTPProvider directly"
    assert clients == {
        "reads": {"ours", *api, "web3 eth.call, our ABI coding", provider},
        "sends, batched": {"ours", provider},
        "sends, one by one": {"ours", *api, provider},
        "logs": {"ours", *api, provider}}, result.stdout
    verdict = [line for line in result.stdout.splitlines() if line.startswith("verdict: ")]
    assert verdict in (["verdict: switch the library to web3.py"],
                       ["verdict: keep ours (web3.py's API is not within 10 % on every "
                        "workload)"]), result.stdout
    assert "sends, batched: cannot" in result.stdout  # batch_requests refuses raw sends
