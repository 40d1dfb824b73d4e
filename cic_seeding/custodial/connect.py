"""From settings to a client of the custodial engine they name."""

from __future__ import annotations

from cic_seeding.config import Settings
from cic_seeding.custodial.api import endpoint
from cic_seeding.custodial.client import CustodialClient
from cic_seeding.custodial.local import LocalClient, is_embedded, unreachable
from cic_seeding.custodial.spool import SpoolClient, is_spool


def engine_client(settings: Settings) -> CustodialClient:
    """A client of the engine the settings name (one embedded in this process for memory://,
    one on a spool directory for filesystem://)."""
    return client_for(*endpoint(settings), timeout=settings.custodial_timeout)


def client_for(broker_url: str, queue: str, *, timeout: float = 120.0) -> CustodialClient:
    """A client of the engine on ``broker_url`` and ``queue``, whatever carries its tasks."""
    if is_embedded(broker_url):
        return LocalClient(broker_url, queue, timeout=timeout)
    if is_spool(broker_url):
        return SpoolClient(broker_url, queue, timeout=timeout)
    return CustodialClient(broker_url, queue, timeout=timeout)


def unconfigured(settings: Settings) -> str | None:
    """Why no custodial engine is configured (None: one is)."""
    if settings.custodial_broker_url or settings.custodial_queue:
        broker, queue = endpoint(settings)
        if is_embedded(broker):  # an engine embedded in a process: this one?
            return unreachable(queue)
        return None
    return ("no custodial engine is configured (set custodial_broker_url / "
            "CIC_CUSTODIAL_BROKER_URL, or use a devnet started with --custodial)")
