"""The transaction lifecycle every sender shares: record before broadcast, watch to a receipt,
recover what a node loses, replaces or starves (see :mod:`cic_seeding.outbox.outbox`).

::

    outbox = outbox_for(settings, network.client, store)
    sent = outbox.send(signer, [Intent(call, "register", address)])
    outcomes = outbox.wait([t.family for t in sent])
"""

from __future__ import annotations

from collections.abc import Sequence

from cic_seeding.chain.client import ChainClient
from cic_seeding.config import Settings
from cic_seeding.datadir import DataDir
from cic_seeding.outbox.archive import Fetched, TxArchive, save
from cic_seeding.outbox.node import ClientNode, Fees, Node, Seen
from cic_seeding.outbox.outbox import Intent, Outbox, Outcome, Policy, TxCounts, counts_line
from cic_seeding.state import OutTx, StateStore

__all__ = ["ClientNode", "Fees", "Fetched", "Intent", "Node", "Outbox", "Outcome", "Policy",
           "Seen", "TxArchive", "TxCounts", "counts_line", "outbox_for", "policy_of"]


def policy_of(settings: Settings) -> Policy:
    return Policy(resend_after=settings.tx_resend_after, max_resends=settings.tx_max_resends,
                  max_unmined=settings.tx_max_unmined, stall=settings.tx_stall)


def outbox_for(settings: Settings, client: ChainClient, store: StateStore, *,
               archive: bool = True) -> Outbox:
    """The outbox of ``client``'s chain in ``store``, patient as the settings say. With
    ``archive`` every transaction it signs is also saved raw under the data directory's
    ``tx/``, named by its hash, before it is broadcast (as the older data-seeding tool
    promised, :mod:`cic_seeding.outbox.archive`); an import worker, which has no data
    directory, hands its raw transactions to the dispatcher instead."""
    if not archive:
        return Outbox(store, ClientNode(client), policy_of(settings))
    tx = DataDir(settings.data_dir).tx

    def archive_rows(rows: Sequence[OutTx]) -> None:
        save(tx, ((row.tx_hash, row.raw) for row in rows))

    return Outbox(store, ClientNode(client), policy_of(settings), archive=archive_rows)
