"""The check registry: every check, built-in or third-party, is an entry point.

Register one in your package's ``pyproject.toml`` (the name must equal the check's ``id``)::

    [project.entry-points."cic_seeding.checks"]
    nonce = "my_package.checks:Nonce"
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from importlib.metadata import EntryPoint
from typing import TYPE_CHECKING

from cic_seeding.errors import UsageError, VerifyError
from cic_seeding.plugins import group_entry_points

if TYPE_CHECKING:
    from cic_seeding.verify.base import Check

GROUP = "cic_seeding.checks"


def _entry_points() -> dict[str, EntryPoint]:
    return group_entry_points(GROUP)


def check_ids() -> list[str]:
    """Ids of every installed check, sorted."""
    return sorted(_entry_points())


def unknown_check(name: str, valid: Iterable[str]) -> UsageError:
    """The error for an unknown check id, with near matches and the valid ids."""
    names = sorted(valid)
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    near = f"; did you mean {', '.join(close)}?" if close else ""
    listed = ", ".join(names) if names else "(none installed)"
    return UsageError(f"unknown check {name!r}{near}", hint=f"valid checks: {listed}")


def get_check(name: str) -> type[Check]:
    """The check class registered as ``name``; UsageError (with near matches) if none is."""
    eps = _entry_points()
    if name not in eps:
        raise unknown_check(name, eps)
    return _load(eps[name])


def all_checks() -> list[type[Check]]:
    """Every installed check class, sorted by id."""
    eps = _entry_points()
    return [_load(eps[name]) for name in sorted(eps)]


def _load(ep: EntryPoint) -> type[Check]:
    from cic_seeding.verify.base import Check

    try:
        cls = ep.load()
    except Exception as exc:  # a broken plugin must not look like our bug
        raise VerifyError(f"check {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Check)):
        raise VerifyError(f"check {ep.name!r} ({ep.value}) is not a Check subclass")
    if getattr(cls, "id", None) != ep.name:
        raise VerifyError(f"check {ep.name!r} ({ep.value}) has id "
                          f"{getattr(cls, 'id', None)!r}; the entry-point name must equal it")
    return cls
