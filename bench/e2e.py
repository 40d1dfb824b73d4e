#!/usr/bin/env python3
"""The whole pipeline end to end at scale: generate, import, sync, verify, against issue 9's
targets (100,000 users in under 5 minutes, peak RSS under 500 MB).

    python bench/e2e.py [--users 100000] [--per-transaction] [--dir-root /dev/shm]
                        [--json FILE]

A fresh devnet; each stage runs as its own process (so its peak RSS is its own), one after the
other, as a user would run them: ``generate``, ``import eth`` (light keyfiles; the opt-in
BatchFunder path unless ``--per-transaction``), ``sync eth`` until every user is paid, and
``verify`` with every check that applies (accounts_index, balance, faucet, gas, local_key,
imported). Prints seconds and peak RSS per stage and in all. The throughput ratios against the
naive baseline and the ceiling are ``bench/run.py``'s (measured at sizes where the baselines
finish in reasonable time).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._util import (  # noqa: E402
    Record,
    add_json_option,
    child_measure,
    import_all,
    machine,
    run_child,
    table,
)

TARGET_SECONDS, TARGET_RSS_MB = 300, 500


def _settings(devnet: str, data: str, batch: bool) -> Any:
    from cic_seeding.config import load_settings

    values = {"devnet_dir": devnet, "data_dir": data}
    if batch:
        values["batch_funder"] = "devnet"
    return load_settings(values, environ={})


def stage_generate(n: int, data: str) -> None:
    from cic_seeding.generate.generator import GenerateOptions, generate

    child_measure(lambda: generate(GenerateOptions(directory=Path(data), count=n, seed=n))
                  and None)


def stage_import(devnet: str, data: str, batch: str) -> None:
    from cic_seeding.importers.eth import EthImporter

    def work() -> dict[str, Any]:
        result = import_all(EthImporter(_settings(devnet, data, batch == "batch")))
        return {"users": result.confirmed}

    child_measure(work)


def stage_sync(devnet: str, data: str, batch: str) -> None:
    from cic_seeding.sync.run import run_sync
    from cic_seeding.sync.syncer import SyncOptions

    def work() -> dict[str, Any]:
        result = run_sync(_settings(devnet, data, batch == "batch"), "eth",
                          SyncOptions(timeout=3600, poll=0.05))
        if not result.ok:
            raise SystemExit(result.render_text())
        return {"users": result.done}

    child_measure(work)


def stage_verify(devnet: str, data: str, batch: str) -> None:
    from cic_seeding.verify import VerifyOptions, run_verify

    def work() -> dict[str, Any]:
        result = run_verify(_settings(devnet, data, False), VerifyOptions())
        if not result.ok:
            raise SystemExit(result.render_text())
        return {"checks": sorted(result.checks)}

    child_measure(work)


STAGES = {"generate": stage_generate, "import": stage_import, "sync": stage_sync,
          "verify": stage_verify}
TABLE_HEADERS = ["stage", "seconds", "users/s", "peak RSS MB"]


def table_cells(row: dict[str, Any]) -> list[str]:
    """A row of the printed (and README) table."""
    return [row["stage"], f"{row['seconds']:.1f}", f"{row['rate']:,.0f}",
            f"{row['peak_rss_mb']:.0f}"]


def table_notes(document: dict[str, Any]) -> list[str]:
    """The lines under the table: the run against issue 9's targets."""
    total = document["rows"][-1]
    targets = document["targets"]
    return [f"targets: under {targets['seconds']}s ({total['seconds'] / targets['seconds']:.2f}x "
            f"of it), peak RSS under {targets['peak_rss_mb']} MB "
            f"({total['peak_rss_mb'] / targets['peak_rss_mb']:.2f}x of it)"]


def _row(stage: str, n: int, seconds: float, peak_rss_mb: float) -> dict[str, Any]:
    return {"stage": stage, "users": n, "seconds": seconds, "rate": n / seconds,
            "unit": "users/s", "peak_rss_mb": peak_rss_mb}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        values = sys.argv[3:]
        STAGES[sys.argv[2]](*[int(v) if v.isdigit() else v for v in values])  # type: ignore[operator]
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--per-transaction", action="store_true",
                        help="the per-transaction path instead of the BatchFunder")
    default_root = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    parser.add_argument("--dir-root", default=default_root)
    add_json_option(parser)
    args = parser.parse_args()
    record = Record("e2e")
    from cic_devnet.devnet import devnet_up

    n, path = args.users, "per-transaction" if args.per_transaction else "batch"
    work = Path(tempfile.mkdtemp(prefix="cic-bench-e2e-", dir=args.dir_root))
    devnet = devnet_up(work / "devnet")
    dn, data = str(work / "devnet"), str(work / "data")
    rows: list[dict[str, Any]] = []
    total, peak = 0.0, 0.0
    started = time.monotonic()
    try:
        for name, stage_args in (("generate", [str(n), data]), ("import", [dn, data, path]),
                                 ("sync", [dn, data, path]), ("verify", [dn, data, path])):
            m = run_child(__file__, name, *stage_args)
            total += m["seconds"]
            peak = max(peak, m["peak_rss_mb"])
            rows.append(_row(name, n, m["seconds"], m["peak_rss_mb"]))
    finally:
        devnet.stop()
        shutil.rmtree(work, ignore_errors=True)
    rows.append(_row("end to end", n, total, peak))
    document = record.document(rows, path=path, users=n,
                               targets={"seconds": TARGET_SECONDS, "peak_rss_mb": TARGET_RSS_MB},
                               options={"users": n, "per_transaction": args.per_transaction,
                                        "dir_root": args.dir_root})
    print(f"{n:,} users end to end ({path} path) on {machine()}, data under {args.dir_root}, "
          f"{time.monotonic() - started:.0f}s with the devnet")
    print(table(TABLE_HEADERS, [table_cells(r) for r in rows]))
    print("\n".join(table_notes(document)))
    if args.json:
        Record.write(args.json, document)


if __name__ == "__main__":
    main()
