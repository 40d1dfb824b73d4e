#!/usr/bin/env python3
"""Generator throughput vs its floor, measured in the same run.

    python bench/generate.py [--users 10000 100000] [--dir-root /dev/shm] [--json FILE]

For each N: the generator writing a full data directory (users/s, peak RSS of the process tree),
and the floor: the same N Faker person records and key derivations built by the same worker
pool with no files written. The ratio generate/floor is what matters; absolute rates are context.
The data directory goes under --dir-root (default: a tmpfs when there is one, since the sharded
src/ and phone/ stores make the run file-system bound on a disk; pass a disk path to see that).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._util import (  # noqa: E402
    Record,
    add_json_option,
    child_measure,
    machine,
    run_child,
    table,
)

TABLE_HEADERS = ["users", "generate users/s", "floor users/s", "generate/floor", "peak RSS MB",
                 "seconds"]


def table_cells(row: dict[str, Any]) -> list[str]:
    """A row of the printed (and README) table."""
    return [f"{row['users']:,}", f"{row['rate']:,.0f}", f"{row['baseline_rate']:,.0f}",
            f"{row['ratio']:.2f}x", f"{row['peak_rss_mb']:.0f}", f"{row['seconds']:.1f}"]


def _child(args: list[str]) -> None:
    from cic_seeding.generate import generator
    from cic_seeding.generate._worker import WorkerConfig

    stage, count, directory = args[0], int(args[1]), args[2]
    if stage == "generate":
        opts = generator.GenerateOptions(directory=Path(directory), count=count, seed=1)
        child_measure(lambda: generator.generate(opts) and None)
    else:
        cfg = WorkerConfig(root=directory, seed=1, locale="en_KE",
                           chain_spec="evm:byzantium:8996:bloxberg", epoch=1_700_000_000,
                           max_balance=10**8, write=False)
        child_measure(lambda: sum(1 for _ in generator._users(cfg, 0, count, 0)) and None)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[10_000, 100_000])
    default_root = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    parser.add_argument("--dir-root", default=default_root)
    add_json_option(parser)
    args = parser.parse_args()
    record = Record("generate")
    rows: list[dict[str, Any]] = []
    for n in args.users:
        work = Path(tempfile.mkdtemp(prefix="cic-bench-gen-", dir=args.dir_root))
        try:
            floor = run_child(__file__, "floor", str(n), str(work / "floor"))
            gen = run_child(__file__, "generate", str(n), str(work / "data"))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        gen_rate, floor_rate = n / gen["seconds"], n / floor["seconds"]
        rows.append({"users": n, "stage": "generate", "rate": gen_rate, "unit": "users/s",
                     "baseline": "floor", "baseline_rate": floor_rate,
                     "ratio": gen_rate / floor_rate, "peak_rss_mb": gen["peak_rss_mb"],
                     "seconds": gen["seconds"], "baseline_seconds": floor["seconds"]})
    print(f"generate benchmark on {machine()}, data under {args.dir_root}")
    print(table(TABLE_HEADERS, [table_cells(r) for r in rows]))
    if args.json:
        Record.write(args.json, record.document(
            rows, options={"users": args.users, "dir_root": args.dir_root}))


if __name__ == "__main__":
    main()
