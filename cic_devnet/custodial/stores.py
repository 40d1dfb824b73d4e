"""The engine's storage by URL: PostgreSQL (:mod:`.storage`) or SQLite (:mod:`._sqlite`)."""

from __future__ import annotations

from ._sqlite import SqliteStorage
from .storage import SQLITE_PREFIX, Storage


def open_storage(url: str, schema: str | None = None, *, create: bool = True) -> Storage:
    """The storage ``url`` names: ``sqlite:///PATH`` (one file, for an engine embedded in one
    process), else PostgreSQL (tables in ``schema``)."""
    if url.startswith(SQLITE_PREFIX):
        return SqliteStorage(url, create=create)
    return Storage(url, schema, create=create)
