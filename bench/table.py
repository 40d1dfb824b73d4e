#!/usr/bin/env python3
"""Markdown tables from the benchmarks' JSON results (``--json FILE``), for the README.

    python bench/table.py RESULT.json [...]                       # print them
    python bench/table.py --readme README.md RESULT.json [...]    # rewrite the README's
    python bench/table.py --readme README.md --check RESULT.json  # exit 1 if out of date

Each result becomes the command it ran, when, on what machine, at which commit and with which
versions, then its table (the same rows the benchmark printed, by the benchmark's own
``table_cells``) and the lines the benchmark printed under it. With ``--readme`` the text
between the lines ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` is replaced by the
results whose file name (without ``.json``) is NAME, else by those of the benchmark NAME
(``run``, ``e2e``, ``generate``, ``meta``, ``verify``, ``node_client``), in the order given;
markers without a result given stay as they are, and a result without a marker is reported on
stderr.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import re
import shlex
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._util import SCHEMA, table  # noqa: E402

#: The benchmarks that write results, by the ``bench`` field of their documents.
BENCHES = ("run", "e2e", "generate", "meta", "verify", "node_client")
#: A section: its markers each on a line of their own (so that a marker quoted in prose, such
#: as this module's or the README's, is not one).
MARKER = re.compile(r"^<!-- bench:(?P<name>[\w.-]+) -->\n.*?^<!-- /bench:(?P=name) -->$",
                    re.S | re.M)
OPENING = re.compile(r"^<!-- bench:(?P<name>[\w.-]+) -->$", re.M)


def load(path: Path) -> dict[str, Any]:
    """A result document, checked to be one this tool can render."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: {path}: {exc}") from exc
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise SystemExit(f"error: {path}: not a benchmark result of schema {SCHEMA}")
    if document.get("bench") not in BENCHES:
        raise SystemExit(f"error: {path}: unknown benchmark {document.get('bench')!r}")
    return document


def _module(document: dict[str, Any]) -> ModuleType:
    return importlib.import_module(f"bench.{document['bench']}")


def _command(argv: list[str]) -> str:
    """The command as typed, without ``--json FILE`` (where the result went)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--json":
            skip = True
        elif not arg.startswith("--json="):
            out.append(arg)
    return "python " + shlex.join(out)


def heading(document: dict[str, Any]) -> str:
    """The line above a table: command, date, commit, machine, versions."""
    date = datetime.datetime.fromisoformat(document["date"].replace("Z", "+00:00"))
    commit = document.get("commit")
    at = ("outside a git checkout" if commit is None else f"commit {commit['sha'][:10]}"
          + (" with uncommitted changes" if commit["dirty"] else ""))
    m = document["machine"]
    load_avg = m.get("load_average") or []
    machine = (f"{m['cpu']} ({m['arch']}), {m['cores']} cores, {m['memory_mb']:,} MB, "
               f"{m['os']}, Python {m['python']}"
               + (f", load average {load_avg[0]:.2f} at the start" if load_avg else ""))
    versions = ", ".join(f"{name} {version}" for name, version in document["versions"].items()
                         if version)
    return (f"`{_command(document['command'])}`, {date:%Y-%m-%d %H:%M} UTC, {at}, "
            f"{document['wall_seconds']:.0f} s in all;\non {machine};\n{versions}.")


def render(document: dict[str, Any]) -> str:
    """One result: its heading, its table and its notes, in Markdown."""
    module = _module(document)
    rows = [module.table_cells(row) for row in document["rows"]]
    parts = [heading(document), table(module.TABLE_HEADERS, rows)]
    notes = module.table_notes(document) if hasattr(module, "table_notes") else []
    if notes:
        parts.append("\n".join(f"- {line}" for line in notes))
    return "\n\n".join(parts)


def update(text: str, results: list[tuple[Path, dict[str, Any]]]) -> tuple[str, list[Path]]:
    """``text`` with every marked section that has results rewritten from them, and the
    results no marker takes."""
    names = [m["name"] for m in OPENING.finditer(text)]
    closed = {m["name"] for m in MARKER.finditer(text)}
    unclosed = [n for n in names if n not in closed]
    if unclosed:
        raise SystemExit(f"error: <!-- bench:{unclosed[0]} --> has no "
                         f"<!-- /bench:{unclosed[0]} --> after it")
    placed: dict[str, list[str]] = {}
    unplaced = []
    for path, document in results:
        name = path.stem if path.stem in names else document["bench"]
        if name in names:
            placed.setdefault(name, []).append(render(document))
        else:
            unplaced.append(path)

    def section(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in placed:
            return match.group(0)
        body = "\n\n".join(placed[name])
        return f"<!-- bench:{name} -->\n\n{body}\n\n<!-- /bench:{name} -->"

    return MARKER.sub(section, text), unplaced


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, metavar="RESULT.json")
    parser.add_argument("--readme", type=Path, default=None,
                        help="rewrite this file's <!-- bench:NAME --> sections instead of "
                             "printing")
    parser.add_argument("--check", action="store_true",
                        help="with --readme: write nothing, exit 1 if the file is not what "
                             "the results make it")
    args = parser.parse_args()
    results = [(path, load(path)) for path in args.results]
    if args.readme is None:
        if args.check:
            raise SystemExit("error: --check needs --readme")
        print("\n\n".join(render(document) for _, document in results))
        return
    text = args.readme.read_text(encoding="utf-8")
    new, unplaced = update(text, results)
    for path in unplaced:
        print(f"note: no <!-- bench:{path.stem} --> or <!-- bench:{load(path)['bench']} --> "
              f"section in {args.readme} for {path}", file=sys.stderr)
    if args.check:
        if new != text:
            raise SystemExit(f"{args.readme} is out of date: run python bench/table.py "
                             f"--readme {args.readme} " + " ".join(map(str, args.results)))
        return
    if new != text:
        args.readme.write_text(new, encoding="utf-8")


if __name__ == "__main__":
    main()
