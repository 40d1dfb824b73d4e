"""Sending the payments of the ledger exactly once, through the outbox.

The discipline, per payment:

1. ``pending`` -> signed by the outbox (:mod:`cic_seeding.outbox`), which records the
   transaction *and* the payment's hash, raw bytes and nonce (``submitted``) in one store
   transaction, then broadcasts it; a node refusal other than "nonce used" fails it with the
   node's words;
2. ``submitted`` -> the outbox follows it: mined -> ``confirmed`` (reverted -> ``failed``,
   unless the chain shows the effect anyway); lost -> the *same* raw bytes again (lowest nonce
   first, so a gap left by any transaction of the signer is filled first); its nonce used by
   another transaction -> ``replaced``: the chain is asked whether the user got the payment
   anyway (faucet ``nextTime``, the signer's Transfer/Mint logs to the user, the user's native
   balance) -> ``confirmed`` if so, else back to ``pending`` and signed again;
3. a transaction the outbox gives up on for this run fails the payment; the next run takes it
   back as ``submitted`` (:meth:`Payer.retry`) and resumes the same transaction.

So a crash at any point leaves either an unsent payment (signed next round) or a recorded
transaction (checked, re-sent byte for byte), never a second payment.

With a ``group`` builder (the opt-in BatchFunder path) one transaction pays many payments:
each of them records the same hash, raw transaction and nonce, so they share one fate -- the
same discipline, per transaction instead of per payment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from cic_seeding.chain.signer import Signer
from cic_seeding.outbox import Outbox, ledger
from cic_seeding.state import FAUCET, Payment, StateStore
from cic_seeding.sync.port import Call, SyncChain

log = logging.getLogger(__name__)

BuildCall = Callable[[Payment], Call]
#: Payments -> transactions, each paying the payments listed with it.
BuildGroups = Callable[[Sequence[Payment]], list[tuple[Call, list[Payment]]]]


class Payer:
    def __init__(self, store: StateStore, importer: str, chain: SyncChain, outbox: Outbox,
                 signer: Signer, build: BuildCall, group: BuildGroups | None = None) -> None:
        self.store = store
        self.importer = importer
        self.chain = chain
        self.outbox = outbox
        self.signer = signer
        self.build = build
        self.group = group

    @property
    def settles_each_batch(self) -> bool:
        """Settle each batch of payments before sending the next: on a node that mines when
        asked, where each batch is mined as it is sent (see :meth:`Syncer._pay`)."""
        return self.outbox.node.explicit_mining

    def pay(self, payments: Sequence[Payment]) -> int:
        """Sign, record and broadcast ``payments`` (pending ones); returns how many were sent."""
        if not payments:
            return 0
        todo = self._skip_done_on_chain(payments)
        if not todo:
            return 0
        groups = self.group(todo) if self.group else [(self.build(p), [p]) for p in todo]
        return ledger.send_rows(self.outbox, self.store, self.importer,
                                [(self.signer, call, paid) for call, paid in groups],
                                what="payment", purpose=_purpose)

    def _skip_done_on_chain(self, payments: Sequence[Payment]) -> list[Payment]:
        """Leave out faucet payouts the chain shows given already, asking only about those
        tried before (a transaction or a reason on record): a first payout the faucet refuses
        reverts, and :meth:`_reverted` then finds it given -- one read per retried payout
        instead of one per user."""
        faucet = [p.address for p in payments
                  if p.kind == FAUCET and (p.tx_hash is not None or p.reason is not None)]
        paid = self.chain.faucet_paid(faucet) if faucet else set()
        done = [p for p in payments if p.kind == FAUCET and p.address in paid]
        if done:
            log.info("%d faucet payouts found on chain already; not sent again", len(done))
            self.store.mark_payments_confirmed(self.importer,
                                               [(p.address, p.kind, -1) for p in done])
        return [p for p in payments if not (p.kind == FAUCET and p.address in paid)]

    def settle(self, payments: Sequence[Payment]) -> int:
        """One outbox pass over submitted ``payments``; returns how many were confirmed now."""
        mined = self._followed(payments)
        self.store.mark_payments_confirmed(self.importer, [
            (p.address, p.kind, block) for p, block in mined])
        return len(mined)

    def _followed(self, payments: Sequence[Payment]) -> list[tuple[Payment, int]]:
        """One outbox pass over the transactions of ``payments``: those mined, with their
        block; the rest are handled (reverted, replaced, failed) or left on their way."""
        return ledger.follow(self.outbox, self.store, self.importer, payments,
                             paid=lambda kind, rows: self.paid_on_chain(
                                 kind, [p.address for p in rows]),
                             reverted=self._reverted)

    def paid_on_chain(self, kind: str, addresses: Sequence[str]) -> set[str]:
        """Those ``addresses`` the chain shows paid the payment ``kind``."""
        return self.chain.paid(kind, addresses) if addresses else set()

    def _reverted(self, payments: Sequence[Payment]) -> None:
        paid = self.chain.faucet_paid([p.address for p in payments if p.kind == FAUCET])
        self.store.mark_payments_confirmed(
            self.importer, [(p.address, p.kind, -1) for p in payments
                            if p.kind == FAUCET and p.address in paid])
        self.store.mark_payments_failed(self.importer, [
            (p.address, p.kind, f"{p.kind} transaction {p.tx_hash} reverted"
             + (" (does the signer hold enough tokens?)" if p.kind == "fund" else ""))
            for p in payments if not (p.kind == FAUCET and p.address in paid)])

    def retry(self, failed: Sequence[Payment]) -> None:
        """A new run tries ``failed`` payments again (resuming a transaction still on its
        way, never signing it anew)."""
        ledger.retry(self.outbox, self.store, self.importer, failed)


def _purpose(paid: Sequence[Payment]) -> str:
    return paid[0].kind if len(paid) == 1 else f"{paid[0].kind}_batch"
