"""The users to verify: the data directory's users with their targets from the state store."""

from __future__ import annotations

from pathlib import Path

from cic_seeding.config import Settings
from cic_seeding.datadir import DataDir
from cic_seeding.errors import VerifyError
from cic_seeding.state import norm, open_state_store, state_location
from cic_seeding.verify.base import VerifyUser


def load_users(data: DataDir, targets: dict[str, str]) -> list[VerifyUser]:
    """Every user of ``data`` in index order; ``targets`` maps user address -> target address.

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
        users.append(VerifyUser(row.index, address, targets.get(address),
                                balances.get(address.removeprefix("0x"))))
    return users


def load_targets(settings: Settings, importer: str) -> tuple[dict[str, str], int]:
    """``({user address: target address}, users the importer knows)`` from the state store.

    A missing default SQLite store means nothing was imported (it is not created).
    """
    if settings.state_url is None and not Path(state_location(settings)).exists():
        return {}, 0
    with open_state_store(settings) as store:
        targets = {norm(user): norm(target) for target, user in store.targets(importer).items()}
        known = sum(store.counts(importer).values())
    return targets, known
