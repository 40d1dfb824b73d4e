"""Our modules as the import-reading tests see them (tests/test_architecture.py,
tests/test_packaging.py): every module of the two packages, and which of them a name belongs to."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from tests.helpers import ROOT

PACKAGES = ("cic_seeding", "cic_devnet")


@cache
def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of our packages."""
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def owner(name: str) -> str | None:
    """The module of ours that ``name`` (a module or a name inside one) belongs to."""
    mods = modules()
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def import_names(node: ast.AST, package: str) -> Iterator[tuple[str, int]]:
    """(imported name, line) of an import statement (nothing for any other node); a relative
    import is resolved against ``package``, and ``from M import a`` yields M and M.a."""
    if isinstance(node, ast.Import):
        yield from ((alias.name, node.lineno) for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            parts = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*parts, base] if base else parts)
        yield base, node.lineno
        yield from ((f"{base}.{alias.name}", node.lineno) for alias in node.names)
