"""The importer registry: every importer, built-in or third-party, is an entry point.

Register one in your package's ``pyproject.toml``::

    [project.entry-points."cic_seeding.importers"]
    mychain = "my_package.importer:MyImporter"
"""

from __future__ import annotations

import difflib
import inspect
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import TYPE_CHECKING

from cic_seeding.errors import CicSeedError, ImporterError, UsageError
from cic_seeding.plugins import group_entry_points

if TYPE_CHECKING:
    from cic_seeding.config import Settings
    from cic_seeding.importers.base import Importer

GROUP = "cic_seeding.importers"


def _entry_points() -> dict[str, EntryPoint]:
    return group_entry_points(GROUP)


def importer_names() -> list[str]:
    """Names of every installed importer, sorted."""
    return sorted(_entry_points())


def chain_importers_that_ran(settings: Settings) -> list[str]:
    """The installed importers that registered users of ``settings.data_dir`` (those with a
    ``custody``; ``cic_meta`` and the USSD account importers work on their users) and have
    users in its state store, in any state; in name order. None without a store (it is not
    made)."""
    from cic_seeding.state import open_state_store, state_location

    if settings.state_url is None and not Path(state_location(settings)).exists():
        return []
    with open_state_store(settings) as store:
        ran = [n for n in importer_names() if any(store.counts(n).values())]
    out = []
    for name in ran:
        try:
            if get_importer(name).custody is not None:
                out.append(name)
        except CicSeedError:
            continue  # a broken third-party importer: not one to choose by default
    return out


def get_importer(name: str) -> type[Importer]:
    """The importer class registered as ``name``; UsageError (with near matches) if none is."""
    from cic_seeding.importers.base import Importer

    eps = _entry_points()
    if name not in eps:
        names = sorted(eps)
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        near = f"; did you mean {', '.join(close)}?" if close else ""
        valid = ", ".join(names) if names else "(none installed)"
        raise UsageError(f"unknown importer {name!r}{near}", hint=f"valid importers: {valid}")
    try:
        cls = eps[name].load()
    except Exception as exc:  # a broken plugin must not look like our bug
        raise ImporterError(f"importer {name!r} ({eps[name].value}) failed to load: {exc}"
                            ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Importer)):
        raise ImporterError(f"importer {name!r} ({eps[name].value}) is not an Importer subclass")
    missing = unimplemented(cls)
    if missing:  # refused here, not with a TypeError when the first run constructs it
        raise ImporterError(
            f"importer {name!r} ({eps[name].value}) does not implement {', '.join(missing)}",
            hint=f"{cls.__module__}.{cls.__qualname__} must define every abstract method of "
            "cic_seeding.importers.base.Importer; ask its author for a fixed version")
    return cls


def unimplemented(cls: type) -> list[str]:
    """The abstract methods ``cls`` leaves unimplemented, in the order they are declared
    (the base class's first)."""
    if not inspect.isabstract(cls):
        return []
    abstract = set(getattr(cls, "__abstractmethods__", ()))
    ordered = [n for klass in reversed(cls.__mro__) for n in vars(klass) if n in abstract]
    return list(dict.fromkeys(ordered + sorted(abstract)))
