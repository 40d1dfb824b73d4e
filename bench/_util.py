"""Shared by the benchmarks: run a stage in a child process and measure time and peak memory;
record a run as JSON (:class:`Record`)."""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def child_measure(fn: Callable[[], Any]) -> None:
    """Run ``fn`` in this (child) process and print seconds and peak RSS as JSON."""
    started = time.perf_counter()
    extra = fn()
    seconds = time.perf_counter() - started
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_rss_mb": max(own_peak_kb(), kids) / 1024,
                      "extra": extra}))


def own_peak_kb() -> int:
    """This process's peak RSS in KB: Linux's VmHWM, which is its own. ``ru_maxrss`` is not
    quite: Linux carries it across exec, so a stage started by a big parent would report the
    parent's peak as its own."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux (elsewhere: no /proc)


def run_child(script: str, *args: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, script, "--child", *args], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark stage {args} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> str:
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


# -- results as JSON (``--json FILE``), so runs can be compared and the README's tables
# -- regenerated from them (bench/table.py)

#: The distributions whose versions a result records (None when not installed).
VERSIONED = ("cic-seeding", "web3", "eth-account", "eth-abi", "coincurve", "pycryptodome",
             "requests", "Faker", "celery", "redis", "psycopg2-binary", "starlette", "uvicorn")
#: Bumped when the document's shape changes incompatibly.
SCHEMA = 1
ROOT = Path(__file__).resolve().parent.parent


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="also write the results, the machine, the versions and the git "
                             "commit to FILE as JSON (bench/table.py renders it)")


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00",
                                                                                     "Z")


def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory, OS and Python of this machine, and its load when asked (a
    loaded machine's figures are not comparable with a quiet one's)."""
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "arch": platform.machine(), "cores": os.cpu_count(),
            "memory_mb": round(psutil.virtual_memory().total / 2**20),
            "os": platform.platform(), "python": platform.python_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def anvil_version() -> str | None:
    """``anvil --version``'s version (the binary the devnet runs), None without anvil."""
    try:
        from cic_devnet.anvil import anvil_binary

        out = subprocess.run([str(anvil_binary()), "--version"], capture_output=True,
                             text=True, timeout=30, check=True).stdout
    except Exception:  # noqa: BLE001 -- no anvil is a fact to record, not a failure
        return None
    match = re.search(r"anvil(?: Version:)? *v?(\d[\w.+-]*)", out)
    lines = out.strip().splitlines()
    return match.group(1) if match else lines[0] if lines else None


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out["anvil"] = anvil_version()
    return out


def git_commit() -> dict[str, Any] | None:
    """HEAD of the checkout the benchmark ran from and whether tracked files differed from
    it (other than ``bench/results/``: a series of runs rewrites those as it goes); None
    outside a git checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=30, check=True).stdout.strip()
    try:
        sha = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ".",
                         ":(exclude)bench/results"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"sha": sha, "dirty": dirty}


def _command() -> list[str]:
    """This process's argv, the script relative to the checkout when it is inside it."""
    script = Path(sys.argv[0]).resolve()
    argv = list(sys.argv)
    if script.is_relative_to(ROOT):
        argv[0] = script.relative_to(ROOT).as_posix()
    return argv


class Record:
    """One benchmark run as a JSON document. Made when the run starts (date, machine and its
    load, and the commit -- the code that ran -- are the start's); :meth:`document` adds the
    rows, :meth:`write` writes it."""

    def __init__(self, bench: str) -> None:
        self.bench = bench
        self.date = utc_now()
        self.command = _command()
        self.machine = machine_info()
        self.commit = git_commit()
        self.started = time.monotonic()

    def document(self, rows: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
        """The run's document: ``rows`` hold numbers (no formatted strings); ``fields`` are
        the bench's own top-level facts (options, targets, verdict...)."""
        return {"schema": SCHEMA, "bench": self.bench, "command": self.command,
                "date": self.date, "wall_seconds": time.monotonic() - self.started,
                "machine": self.machine, "versions": versions(), "commit": self.commit,
                **fields, "rows": rows}

    @staticmethod
    def write(path: Path, document: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)


def ratio_text(ratio: float) -> str:
    """A ratio as the tables print it: 1 decimal from 1x up, 2 below."""
    return f"{ratio:.1f}x" if ratio >= 1 else f"{ratio:.2f}x"
