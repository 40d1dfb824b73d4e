"""Shared by the benchmarks: run a stage in a child process and measure time and peak memory."""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any


def child_measure(fn: Callable[[], Any]) -> None:
    """Run ``fn`` in this (child) process and print seconds and peak RSS as JSON."""
    started = time.perf_counter()
    extra = fn()
    seconds = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_rss_mb": max(own, kids) / 1024,
                      "extra": extra}))


def run_child(script: str, *args: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, script, "--child", *args], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark stage {args} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
            for r in rows]
    return "\n".join([line, sep, *body])


def import_all(importer: Any) -> Any:
    """Run an importer to the end and close it; a run that is not ok ends the benchmark with
    its report (a benchmark of a failed run measures nothing)."""
    try:
        result = importer.run()
    finally:
        importer.close()
    if not result.ok:
        raise SystemExit(result.render_text())
    return result
