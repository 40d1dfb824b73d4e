"""Entry points, read once per ``sys.path``.

Importers and checks are entry points (:mod:`cic_seeding.importers.registry`,
:mod:`cic_seeding.verify.registry`). Finding them reads every installed distribution's
metadata -- a few milliseconds each time, and a verify run asked sixteen times, half its time
for 1,000 users -- so the answer is kept until ``sys.path`` changes (a plugin put on it later
is still found)."""

from __future__ import annotations

import functools
import sys
from importlib.metadata import EntryPoint, entry_points


def group_entry_points(group: str) -> dict[str, EntryPoint]:
    """The entry points of ``group`` by name (a copy: the caller may change it)."""
    return dict(_group(group, tuple(sys.path)))


@functools.lru_cache(maxsize=16)
def _group(group: str, path: tuple[str, ...]) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=group)}
