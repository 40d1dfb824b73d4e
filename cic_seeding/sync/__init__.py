"""The block syncer: cursor over AccountsIndex logs, reorg handling, payments exactly once."""

from cic_seeding.sync.payer import Payer
from cic_seeding.sync.port import Call, Receipt, SyncChain
from cic_seeding.sync.syncer import PaymentPlan, Syncer, SyncOptions, SyncResult

__all__ = ["Call", "Payer", "PaymentPlan", "Receipt", "SyncChain", "SyncOptions", "SyncResult",
           "Syncer"]
