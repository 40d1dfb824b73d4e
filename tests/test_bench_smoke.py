"""The benchmarks run end to end at tiny sizes, print their tables and write their results as
JSON that bench/table.py renders to the same tables (smoke tests: no timing assertions)."""

from __future__ import annotations

import datetime
import json
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.helpers import ROOT

#: Every result's top-level keys.
RESULT_KEYS = {"schema", "bench", "command", "date", "wall_seconds", "machine", "versions",
               "commit", "options", "rows"}


def script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "bench" / name), *args],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)


def _table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|")]


def check_result(path: Path, bench_name: str, printed: str,
                 text_keys: set[str]) -> dict[str, Any]:
    """The JSON result at ``path``: its structure, its figures numbers (strings only under
    ``text_keys``), and bench/table.py rendering the very table the benchmark printed."""
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    assert set(doc) >= RESULT_KEYS, sorted(doc)
    assert doc["schema"] == 1 and doc["bench"] == bench_name
    assert doc["command"][:1] == [f"bench/{bench_name}.py"] and "--json" in doc["command"]
    date = datetime.datetime.fromisoformat(doc["date"].replace("Z", "+00:00"))
    assert date.utcoffset() == datetime.timedelta(0) and doc["date"].endswith("Z")
    assert isinstance(doc["wall_seconds"], float) and doc["wall_seconds"] > 0
    machine = doc["machine"]
    assert isinstance(machine["cores"], int) and machine["cores"] >= 1
    assert isinstance(machine["memory_mb"], int) and machine["memory_mb"] > 0
    assert machine["cpu"] and machine["os"] and machine["python"] == platform.python_version()
    assert all(isinstance(x, float) for x in machine["load_average"])
    versions = doc["versions"]
    for name in ("cic-seeding", "web3", "eth-account", "coincurve"):
        assert re.fullmatch(r"\d+(\.\d+)+\S*", versions[name]), versions
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", versions["anvil"]), versions
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{40}", doc["commit"]["sha"]) and doc["commit"]["sha"] == head
    assert isinstance(doc["commit"]["dirty"], bool)
    assert doc["rows"] and all(isinstance(row, dict) for row in doc["rows"])
    for row in doc["rows"]:
        for key, value in row.items():
            if key in text_keys:
                assert isinstance(value, str), (key, row)
            elif value is not None and not isinstance(value, dict | list):
                assert isinstance(value, int | float) and not isinstance(value, bool), (key, row)
        assert row["rate"] > 0, row
    rendered = script("table.py", str(path))
    assert rendered.returncode == 0, rendered.stderr
    shown = [c for c in doc["command"] if c not in ("--json", str(path))]
    assert rendered.stdout.startswith(f"`python {' '.join(shown)}`, "), rendered.stdout
    assert f"commit {head[:10]}" in rendered.stdout and "anvil " in rendered.stdout
    assert _table_lines(rendered.stdout) == _table_lines(printed), rendered.stdout
    return doc

STAGE_ROWS = ("generate", "import+sync (eth)", "import --sync (eth, one run)",
              "import+sync (eth, --batch-funder)",
              "verify (4 chain checks)", "metadata import (cic_meta, 4 docs/user)",
              "custodial import (cic_eth, 1 engine worker)",
              "import (eth, --executor celery, 1 worker)",
              "import (eth, --executor celery, 2 workers)")


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return script("run.py", *args)


def test_pipeline_benchmark_prints_every_stage(tmp_path: Path) -> None:
    # every stage; the metadata, custodial and celery imports on 200 users keep CI short
    out = tmp_path / "run.json"
    result = bench("--users", "1000", "--naive-sample", "100", "--service-users", "200",
                   "--json", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    table = result.stdout
    for stage in STAGE_ROWS:
        assert f"| {stage} " in table, table
    rows = [line for line in table.splitlines() if line.startswith(("| 1,000 ", "| 200 "))]
    assert len(rows) == len(STAGE_ROWS)
    for row in rows:  # every figure has its ratio to a baseline of the same run
        ratio = row.split("|")[5].strip()
        assert ratio.endswith("x") and float(ratio[:-1]) > 0, row
    doc = check_result(out, "run", result.stdout, {"stage", "unit", "baseline", "server_unit",
                                                  "server_name"})
    assert [r["stage"] for r in doc["rows"]] == list(STAGE_ROWS)
    assert [r["users"] for r in doc["rows"]] == [1000] * 5 + [200] * 4
    assert doc["options"]["service_users"] == 200 and doc["options"]["naive_sample"] == 100
    for row in doc["rows"]:
        assert row["ratio"] == row["rate"] / row["baseline_rate"], row
        has_ceiling = row["stage"].startswith(("import+sync", "import --sync"))
        assert (row["ceiling"] is not None) == has_ceiling, row
        if has_ceiling:
            assert row["ceiling_ratio"] == row["rate"] / row["ceiling"], row


def test_stages_pick_a_subset() -> None:
    result = bench("--users", "300", "--stages", "generate")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| generate " in result.stdout and "import" not in result.stdout


def test_unknown_or_unsatisfiable_stages_are_one_line() -> None:
    unknown = bench("--stages", "generate,sead")
    assert unknown.returncode != 0
    assert unknown.stderr.strip() == ("error: unknown stage sead; valid stages: generate, seed, "
                                      "together, batch, verify, meta, custodial, celery")
    alone = bench("--stages", "verify")
    assert alone.returncode != 0
    assert "stage verify checks the users of stage seed or batch" in alone.stderr


def test_end_to_end_benchmark_prints_each_stage_and_the_targets(tmp_path: Path) -> None:
    out = tmp_path / "results" / "e2e.json"  # a directory that is not there yet
    result = script("e2e.py", "--users", "300", "--json", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {line.split("|")[1].strip(): line for line in result.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| stage")}
    assert set(rows) == {"generate", "import", "sync", "verify", "end to end"}, result.stdout
    assert "targets: under 300s (" in result.stdout and "peak RSS under 500 MB (" in result.stdout
    doc = check_result(out, "e2e", result.stdout, {"stage", "unit"})
    assert [r["stage"] for r in doc["rows"]] == ["generate", "import", "sync", "verify",
                                                 "end to end"]
    assert doc["path"] == "batch" and doc["users"] == 300
    assert doc["targets"] == {"seconds": 300, "peak_rss_mb": 500}
    total = doc["rows"][-1]
    assert total["seconds"] == sum(r["seconds"] for r in doc["rows"][:-1])
    assert total["peak_rss_mb"] == max(r["peak_rss_mb"] for r in doc["rows"][:-1])
    rendered = script("table.py", str(out)).stdout
    targets = next(line for line in result.stdout.splitlines() if line.startswith("targets"))
    assert f"- {targets}" in rendered  # the line under the table comes along


def test_node_client_benchmark_prints_every_workload_and_client_and_a_verdict(
        tmp_path: Path) -> None:
    # tiny sizes, one round; --default-middleware so web3's default set-up runs too
    out = tmp_path / "client.json"
    result = script("node_client.py", "--reads", "40", "--sends", "12", "--logs", "50",
                    "--batch", "16", "--rounds", "1", "--default-middleware", "--json",
                    str(out))
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
    doc = check_result(out, "node_client", result.stdout, {"workload", "work", "client", "unit"})
    assert doc["verdict"][-1] == verdict[0] and doc["rounds"] == 1
    assert {(r["workload"], r["client"]) for r in doc["rows"]} == {
        (w, c) for w, cs in clients.items() for c in cs}


def test_generate_benchmark_writes_a_result_the_readme_takes(tmp_path: Path) -> None:
    out = tmp_path / "generate-small.json"
    result = script("generate.py", "--users", "150", "--json", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    doc = check_result(out, "generate", result.stdout, {"stage", "unit", "baseline"})
    assert [r["users"] for r in doc["rows"]] == [150]
    assert doc["rows"][0]["ratio"] == doc["rows"][0]["rate"] / doc["rows"][0]["baseline_rate"]
    # --readme rewrites only the marked sections: by file name first, else by benchmark
    readme = tmp_path / "README.md"
    before = ("# Title\n\n<!-- bench:generate-small -->\nold table\n<!-- /bench:generate-small -->"
              "\n\nprose\n\n<!-- bench:generate -->\nkept\n<!-- /bench:generate -->\n\n"
              "<!-- bench:e2e -->\nkept too\n<!-- /bench:e2e -->\n")
    readme.write_text(before, encoding="utf-8")
    stale = script("table.py", "--readme", str(readme), "--check", str(out))
    assert stale.returncode == 1 and "is out of date" in stale.stderr
    assert readme.read_text(encoding="utf-8") == before  # --check writes nothing
    assert script("table.py", "--readme", str(readme), str(out)).returncode == 0
    after = readme.read_text(encoding="utf-8")
    rendered = script("table.py", str(out)).stdout.strip()
    assert after == before.replace("old table\n", f"\n{rendered}\n\n")
    assert script("table.py", "--readme", str(readme), "--check", str(out)).returncode == 0
    # without a section of its name the result goes to its benchmark's
    renamed = tmp_path / "other.json"
    renamed.write_text(out.read_text(encoding="utf-8"), encoding="utf-8")
    assert script("table.py", "--readme", str(readme), str(renamed)).returncode == 0
    assert "kept\n" not in readme.read_text(encoding="utf-8")
    assert "kept too\n" in readme.read_text(encoding="utf-8")
    # a result no section takes is said; a section that is not closed is an error
    readme.write_text("no sections\n", encoding="utf-8")
    lonely = script("table.py", "--readme", str(readme), str(renamed))
    assert lonely.returncode == 0 and "no <!-- bench:other --> or <!-- bench:generate -->" \
        in lonely.stderr
    readme.write_text("<!-- bench:generate -->\nhalf\n", encoding="utf-8")
    unclosed = script("table.py", "--readme", str(readme), str(out))
    assert unclosed.returncode != 0 and "has no <!-- /bench:generate -->" in unclosed.stderr


def test_table_refuses_what_is_not_a_result(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": 1, "bench": "nope", "rows": []}), encoding="utf-8")
    result = script("table.py", str(bad))
    assert result.returncode != 0 and "unknown benchmark 'nope'" in result.stderr


def test_meta_benchmark_writes_its_result(tmp_path: Path) -> None:
    out = tmp_path / "meta.json"
    result = script("meta.py", "--users", "10", "--concurrency", "4", "--json", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    doc = check_result(out, "meta", result.stdout,
                       {"store", "writer", "unit", "baseline", "in_flight"})
    assert [(r["store"], r["writer"]) for r in doc["rows"]] == [
        (store, writer) for store in ("sqlite", "postgresql")
        for writer in ("sequential", "put_many", "put_many, batches", "cic_meta import")]
    assert all(r["documents"] == 40 for r in doc["rows"])


def test_verify_benchmark_writes_its_result(tmp_path: Path) -> None:
    out = tmp_path / "verify.json"
    result = script("verify.py", "--users", "60", "--json", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    doc = check_result(out, "verify", result.stdout, {"method", "unit"})
    assert len(doc["rows"]) == 3 and all(r["failures"] == 0 for r in doc["rows"])
    assert all(r["user_checks"] == 240 for r in doc["rows"])


def test_readme_tables_are_the_committed_results() -> None:
    """The README's generated sections are what bench/results/ makes them."""
    results = sorted(str(p) for p in (ROOT / "bench" / "results").glob("*.json"))
    assert results, "bench/results/ holds the runs the README shows"
    result = script("table.py", "--readme", str(ROOT / "README.md"), "--check", *results)
    assert result.returncode == 0, result.stderr
    assert not result.stderr, result.stderr  # every result has its section


def test_a_stage_reports_its_own_peak_rss_not_its_parents() -> None:
    """A stage process started by a big parent reports its own peak (Linux carries
    ``ru_maxrss`` across exec: it reported the parent's)."""
    ballast = bytearray(300 * 2**20)
    ballast[::4096] = b"\x01" * len(range(0, len(ballast), 4096))  # touch every page
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from bench._util import child_measure; child_measure(lambda: None)")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    peak = json.loads(out.strip().splitlines()[-1])["peak_rss_mb"]
    assert 0 < peak < 150, peak  # a bare interpreter and bench._util: ~16 MB
    del ballast
