"""Per-user import state, the syncer cursor and the payments ledger (SQLite or PostgreSQL).

::

    from cic_seeding.state import open_state_store
    with open_state_store(settings) as store:
        store.add_users("eth", [(row.index, row.address) for row in data.users()])
"""

from __future__ import annotations

from pathlib import Path

from cic_seeding.config import Settings
from cic_seeding.state.base import (
    FAUCET,
    FUND,
    GAS,
    IN_OUTBOX,
    OPEN_TX,
    REGISTER,
    Cursor,
    OutTx,
    Payment,
    PaymentSummary,
    StateStore,
    Status,
    TxStatus,
    UserState,
    norm,
)

__all__ = ["Cursor", "FAUCET", "FUND", "GAS", "IN_OUTBOX", "OPEN_TX", "OutTx", "Payment",
           "PaymentSummary", "REGISTER", "StateStore", "Status", "TxStatus", "UserState", "norm",
           "open_state_store", "state_location"]

STATE_FILE = "state.db"


def state_location(settings: Settings) -> str:
    """The state URL in force: ``settings.state_url`` or ``<data_dir>/state.db``."""
    return settings.state_url or str(Path(settings.data_dir) / STATE_FILE)


def open_state_store(settings: Settings | None = None, *, url: str | None = None,
                     schema: str | None = None) -> StateStore:
    """Open the store ``url`` names (default: from ``settings``).

    ``postgresql://`` (or ``postgres://``) selects PostgreSQL; anything else is a SQLite file
    path, optionally written ``sqlite:///path``.
    """
    if url is None:
        if settings is None:
            raise ValueError("open_state_store needs settings or url")
        url = state_location(settings)
    if url.startswith(("postgresql://", "postgres://")):
        from cic_seeding.state.postgres import PostgresStateStore

        return PostgresStateStore(url, schema=schema)
    from cic_seeding.state.sqlite import SqliteStateStore

    path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url
    return SqliteStateStore(path)
