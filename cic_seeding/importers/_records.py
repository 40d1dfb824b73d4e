"""Checks of a data directory's person records shared by the importers."""

from __future__ import annotations

import json

from cic_seeding.datadir import DataDir, UserRow
from cic_seeding.records.person import person_errors


def record_problem(data: DataDir, user: UserRow) -> str | None:
    """Why ``user``'s person record cannot be imported (None: it can)."""
    path = data.src.path(user.address)
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return f"no person record at {path}"
    except (OSError, ValueError) as exc:
        return f"person record {path} is not valid JSON ({exc}); regenerate or fix it"
    errors = person_errors(doc)
    return f"person record {path} fails the schema: {errors[0]}" if errors else None
