#!/usr/bin/env python3
"""The whole pipeline end to end at scale: generate, import, sync, verify, against issue 9's
targets (100,000 users in under 5 minutes, peak RSS under 500 MB).

    python bench/e2e.py [--users 100000] [--per-transaction] [--dir-root /dev/shm]

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

from bench._util import child_measure, import_all, machine, run_child, table  # noqa: E402

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
    args = parser.parse_args()
    from cic_devnet.devnet import devnet_up

    n, path = args.users, "per-transaction" if args.per_transaction else "batch"
    work = Path(tempfile.mkdtemp(prefix="cic-bench-e2e-", dir=args.dir_root))
    devnet = devnet_up(work / "devnet")
    dn, data = str(work / "devnet"), str(work / "data")
    rows, total, peak = [], 0.0, 0.0
    started = time.monotonic()
    try:
        for name, stage_args in (("generate", [str(n), data]), ("import", [dn, data, path]),
                                 ("sync", [dn, data, path]), ("verify", [dn, data, path])):
            m = run_child(__file__, name, *stage_args)
            total += m["seconds"]
            peak = max(peak, m["peak_rss_mb"])
            rows.append([name, f"{m['seconds']:.1f}", f"{n / m['seconds']:,.0f}",
                         f"{m['peak_rss_mb']:.0f}"])
    finally:
        devnet.stop()
        shutil.rmtree(work, ignore_errors=True)
    rows.append(["end to end", f"{total:.1f}", f"{n / total:,.0f}", f"{peak:.0f}"])
    print(f"{n:,} users end to end ({path} path) on {machine()}, data under {args.dir_root}, "
          f"{time.monotonic() - started:.0f}s with the devnet")
    print(table(["stage", "seconds", "users/s", "peak RSS MB"], rows))
    print(f"targets: under {TARGET_SECONDS}s ({total / TARGET_SECONDS:.2f}x of it), "
          f"peak RSS under {TARGET_RSS_MB} MB ({peak / TARGET_RSS_MB:.2f}x of it)")


if __name__ == "__main__":
    main()
