"""The transaction lifecycle every sender shares: record before broadcast, watch to a receipt,
recover what a node loses, replaces or starves (see :mod:`cic_seeding.outbox.outbox`).

::

    outbox = outbox_for(settings, network.client, store)
    sent = outbox.send(signer, [Intent(call, "register", address)])
    outcomes = outbox.wait([t.family for t in sent])
"""

from __future__ import annotations

from cic_seeding.chain.client import ChainClient
from cic_seeding.config import Settings
from cic_seeding.outbox.node import ClientNode, Fees, Node, Seen
from cic_seeding.outbox.outbox import Intent, Outbox, Outcome, Policy, TxCounts, counts_line
from cic_seeding.state import StateStore

__all__ = ["ClientNode", "Fees", "Intent", "Node", "Outbox", "Outcome", "Policy", "Seen",
           "TxCounts", "counts_line", "outbox_for", "policy_of"]


def policy_of(settings: Settings) -> Policy:
    return Policy(resend_after=settings.tx_resend_after, max_resends=settings.tx_max_resends,
                  max_unmined=settings.tx_max_unmined, stall=settings.tx_stall)


def outbox_for(settings: Settings, client: ChainClient, store: StateStore) -> Outbox:
    """The outbox of ``client``'s chain in ``store``, patient as the settings say."""
    return Outbox(store, ClientNode(client), policy_of(settings))
