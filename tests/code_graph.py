"""Our modules as the import-reading tests see them (tests/test_architecture.py,
tests/test_packaging.py): every module of the two packages, and which of them a name belongs to."""

from __future__ import annotations

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
