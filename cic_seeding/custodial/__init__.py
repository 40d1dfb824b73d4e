"""The public client of a custodial engine: its API (:mod:`.api`), the broker client
(:mod:`.client`), the in-process client of an embedded engine (:mod:`.local`) and the choice
between them from settings (:mod:`.connect`). Importers, sync, doctor and ``cic_devnet`` use
this package; none of them knows the engine's code.
"""

from cic_seeding.custodial.api import (
    DEFAULT_BROKER,
    DEFAULT_QUEUE,
    TASK_BALANCE,
    TASK_CREATE,
    TASK_CREATE_MANY,
    TASK_HAVE,
    TASK_STATUS,
    TASK_TRANSFER,
    TASK_TX_STATUS,
    Reply,
    endpoint,
    parse_reply,
    redact,
)
from cic_seeding.custodial.client import CustodialClient, engine_status
from cic_seeding.custodial.connect import engine_client, unconfigured

__all__ = ["DEFAULT_BROKER", "DEFAULT_QUEUE", "TASK_BALANCE", "TASK_CREATE",
           "TASK_CREATE_MANY", "TASK_HAVE",
           "TASK_STATUS", "TASK_TRANSFER", "TASK_TX_STATUS", "CustodialClient", "Reply",
           "endpoint", "engine_client", "engine_status", "parse_reply", "redact", "unconfigured"]
