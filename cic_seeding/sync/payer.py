"""Sending the payments of the ledger exactly once.

The discipline, per payment:

1. ``pending`` -> sign with a nonce from the allocator, record hash and raw transaction as
   ``submitted`` and *commit*, then broadcast (still holding the signer's nonce lock);
2. a node error on broadcast: "nonce too low" -> back to ``pending`` (re-signed next round);
   anything else -> ``failed`` with the node's words;
3. ``submitted`` -> receipt found: ``confirmed`` (or ``failed`` if it reverted, unless the chain
   shows the effect anyway); no receipt and the node does not know the hash -> re-broadcast the
   *same* raw transaction (its nonce makes that harmless); if that nonce has been used by
   another transaction, ours can never be mined -> back to ``pending``.

So a crash at any point leaves either an unsent payment (re-signed) or a recorded transaction
(re-checked, re-sent byte for byte), never a second payment.

With a ``group`` builder (the opt-in BatchFunder path) one transaction pays many payments:
each of them records the same hash, raw transaction and nonce, so they share one fate -- the
same discipline, per transaction instead of per payment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from cic_seeding.chain.nonce import NonceAllocator, is_nonce_error
from cic_seeding.state import FAUCET, Payment, StateStore
from cic_seeding.sync.port import Call, SyncChain

log = logging.getLogger(__name__)

BuildCall = Callable[[Payment], Call]
#: Payments -> transactions, each paying the payments listed with it.
BuildGroups = Callable[[Sequence[Payment]], list[tuple[Call, list[Payment]]]]


class Payer:
    def __init__(self, store: StateStore, importer: str, chain: SyncChain,
                 allocator: NonceAllocator, build: BuildCall,
                 group: BuildGroups | None = None) -> None:
        self.store = store
        self.importer = importer
        self.chain = chain
        self.allocator = allocator
        self.build = build
        self.group = group

    def pay(self, payments: Sequence[Payment]) -> int:
        """Sign, record and broadcast ``payments`` (pending ones); returns how many were sent."""
        if not payments:
            return 0
        todo = self._skip_done_on_chain(payments)
        if not todo:
            return 0
        groups = self.group(todo) if self.group else [(self.build(p), [p]) for p in todo]
        with self.allocator.reserve() as r:
            signed = [self.chain.sign(c, r.next()) for c, _ in groups]
            self.store.mark_payments_submitted(self.importer, [
                (p.address, p.kind, h, raw, nonce)
                for (_, paid), (h, raw), nonce in zip(groups, signed, r.nonces, strict=True)
                for p in paid])
            errors = self.chain.broadcast([raw for _, raw in signed])
        self._handle_send_errors([p for _, paid in groups for p in paid],
                                 [e for (_, paid), e in zip(groups, errors, strict=True)
                                  for _ in paid])
        return sum(len(paid) for (_, paid), e in zip(groups, errors, strict=True) if e is None)

    def _skip_done_on_chain(self, payments: Sequence[Payment]) -> list[Payment]:
        faucet = [p.address for p in payments if p.kind == FAUCET]
        paid = self.chain.faucet_paid(faucet) if faucet else set()
        done = [p for p in payments if p.kind == FAUCET and p.address in paid]
        if done:
            log.info("%d faucet payouts found on chain already; not sent again", len(done))
            self.store.mark_payments_confirmed(self.importer,
                                               [(p.address, p.kind, -1) for p in done])
        return [p for p in payments if not (p.kind == FAUCET and p.address in paid)]

    def _handle_send_errors(self, payments: Sequence[Payment],
                            errors: Sequence[str | None]) -> None:
        retry, failed = [], []
        for p, err in zip(payments, errors, strict=True):
            if err is None:
                continue
            if is_nonce_error(err):
                retry.append((p.address, p.kind))
            else:
                failed.append((p.address, p.kind, f"the node refused the {p.kind} payment: {err}"))
        if retry:
            log.info("%d payments hit a used nonce; they are signed again", len(retry))
            self.store.reset_payments(self.importer, retry)
        if failed:
            self.store.mark_payments_failed(self.importer, failed)

    def settle(self, payments: Sequence[Payment]) -> int:
        """Check submitted ``payments``; returns how many were confirmed now."""
        with_hash = [p for p in payments if p.tx_hash]
        if not with_hash:
            return 0
        receipts = self.chain.receipts(list(dict.fromkeys(p.tx_hash for p in with_hash
                                                          if p.tx_hash)))
        confirmed, reverted, missing = [], [], []
        for p in with_hash:
            rc = receipts.get(p.tx_hash or "")
            if rc is None:
                missing.append(p)
            elif rc.ok:
                confirmed.append((p.address, p.kind, rc.block_number))
            else:
                reverted.append(p)
        self.store.mark_payments_confirmed(self.importer, confirmed)
        self._reverted(reverted)
        self._resend_unknown(missing)
        return len(confirmed)

    def _reverted(self, payments: Sequence[Payment]) -> None:
        if not payments:
            return
        paid = self.chain.faucet_paid([p.address for p in payments if p.kind == FAUCET])
        self.store.mark_payments_confirmed(
            self.importer, [(p.address, p.kind, -1) for p in payments
                            if p.kind == FAUCET and p.address in paid])
        self.store.mark_payments_failed(self.importer, [
            (p.address, p.kind, f"{p.kind} transaction {p.tx_hash} reverted"
             + (" (does the signer hold enough tokens?)" if p.kind == "fund" else ""))
            for p in payments if not (p.kind == FAUCET and p.address in paid)])

    def _resend_unknown(self, payments: Sequence[Payment]) -> None:
        if not payments:
            return
        known = self.chain.known(list(dict.fromkeys(p.tx_hash for p in payments if p.tx_hash)))
        lost = [p for p in payments if p.tx_hash not in known and p.raw_tx]
        if not lost:
            return
        # one transaction may pay many payments: send each once
        raws: dict[str, str] = {p.tx_hash: p.raw_tx for p in lost if p.tx_hash and p.raw_tx}
        log.info("re-sending %d recorded transactions the node does not know", len(raws))
        with self.allocator.reserve():  # keep other senders out while the old nonces return
            sent = dict(zip(raws, self.chain.broadcast(list(raws.values())), strict=True))
        refused = [(p.address, p.kind, f"the node refused the {p.kind} payment: {e}")
                   for p in lost
                   if (e := sent.get(p.tx_hash or "")) is not None and not is_nonce_error(e)]
        if refused:  # sending these bytes again cannot help: say why; a rerun signs anew
            self.store.mark_payments_failed(self.importer, refused)
        used = [p for p in lost
                if (e := sent.get(p.tx_hash or "")) is not None and is_nonce_error(e)]
        if used:
            # its nonce went to another transaction: ours can never be mined, unless it was
            # mined a moment ago -- look once more before signing it again
            mined = self.chain.receipts(list(dict.fromkeys(p.tx_hash for p in used
                                                           if p.tx_hash)))
            self.store.reset_payments(self.importer, [(p.address, p.kind) for p in used
                                                      if p.tx_hash not in mined])
