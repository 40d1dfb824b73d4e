"""The users to verify: the data directory's users with what the importer did for each."""

from __future__ import annotations

import re
from pathlib import Path

from cic_seeding.config import Settings
from cic_seeding.datadir import DataDir
from cic_seeding.errors import VerifyError
from cic_seeding.state import norm, open_state_store, state_location
from cic_seeding.verify.base import ImportState, VerifyUser


def load_users(data: DataDir, imports: ImportState) -> list[VerifyUser]:
    """Every user of ``data`` in index order, with its target and import state.

    Raises VerifyError if users.csv or balances.csv is missing.
    """
    try:
        balances = data.balances()
        rows = list(data.users())
    except FileNotFoundError as exc:
        raise VerifyError(f"{data.root} has no {Path(str(exc.filename)).name}: it is not a "
                          "complete data directory",
                          hint="generate one with `cic-seed generate --dir DIR COUNT`") from None
    users = []
    for row in rows:
        address = norm(row.address)
        state = imports.users.get(address)
        users.append(VerifyUser(
            row.index, address, imports.target(address),
            balances.get(address.removeprefix("0x")), phone=row.phone,
            import_status=state.status.value if state else None,
            import_reason=state.reason if state else None))
    return users


def load_import(settings: Settings, importer: str) -> ImportState:
    """The state store's record of ``importer``.

    A missing default SQLite store means nothing was imported (it is not created).
    """
    location = state_location(settings)
    if settings.state_url is None and not Path(location).exists():
        return ImportState(importer, location, exists=False)
    with open_state_store(settings) as store:
        users = {norm(u.address): u for u in store.users(importer)}
    return ImportState(importer, _masked(location), users)


def _masked(url: str) -> str:
    """``url`` without a password (``postgresql://user:****@host/db``)."""
    return re.sub(r"^([a-z]+://[^:/@]+):[^@]*@", r"\1:****@", url)
