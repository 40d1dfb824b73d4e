"""A payments ledger (state store ``payments``) kept through the outbox: the syncer's payer
and the traffic replay share it.

A ledger row is paid by one transaction family; the row records the family's first hash and
nonce (its raw bytes: ``IN_OUTBOX``) in the same store transaction as the outbox records the
transaction, before it is broadcast. :func:`follow` turns the outbox's outcomes into ledger
states: mined -> confirmed; replaced -> confirmed if the chain shows the row paid anyway
(``paid``), else pending (signed anew); failed or given up -> failed with the reason; reverted
-> the caller's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from cic_seeding.chain.signer import Signer
from cic_seeding.chain.tx import Call
from cic_seeding.outbox.outbox import Intent, Outbox
from cic_seeding.state import IN_OUTBOX, OutTx, Payment, StateStore, TxStatus

log = logging.getLogger(__name__)

#: ``(kind, addresses) -> those the chain shows paid``, for rows whose transaction was replaced.
Paid = Callable[[str, Sequence[Payment]], set[str]]


def send_rows(outbox: Outbox, store: StateStore, ledger: str,
              items: Sequence[tuple[Signer, Call, Sequence[Payment]]], *, what: str,
              purpose: Callable[[Sequence[Payment]], str], lock: bool = True) -> int:
    """Sign, record (outbox and ledger, one store transaction) and broadcast one transaction
    per item, paying the rows listed with it; rows the node refuses fail with its words.
    Returns how many rows were sent."""
    if not items:
        return 0

    def record(start: int, rows: Sequence[OutTx]) -> None:
        store.mark_payments_submitted(ledger, [
            (p.address, p.kind, t.tx_hash, IN_OUTBOX, t.nonce)
            for (_, _, paid), t in zip(items[start:start + len(rows)], rows, strict=True)
            for p in paid])

    sent = outbox.send_many([(signer, Intent(call, purpose(paid), paid[0].address))
                             for signer, call, paid in items], on_record=record, lock=lock)
    store.mark_payments_failed(ledger, [
        (p.address, p.kind, f"the node refused the {what}: {t.reason}")
        for (_, _, paid), t in zip(items, sent, strict=True) for p in paid
        if t.status == TxStatus.FAILED])
    return sum(len(paid) for (_, _, paid), t in zip(items, sent, strict=True)
               if t.status == TxStatus.SENT)


def follow(outbox: Outbox, store: StateStore, ledger: str, payments: Sequence[Payment], *,
           paid: Paid, reverted: Callable[[Sequence[Payment]], None]
           ) -> list[tuple[Payment, int]]:
    """One outbox pass over the transactions of submitted ``payments``: returns the mined ones
    with their block (the caller confirms them); handles the others (see the module)."""
    with_hash = [p for p in payments if p.tx_hash]
    if not with_hash:
        return []
    families = list(dict.fromkeys((p.tx_hash or "").lower() for p in with_hash))
    known = _adopt(outbox, with_hash, families)
    outcomes = outbox.settle([f for f in families if f in known])
    mined, gone, replaced, failed = [], [], [], []
    foreign = [p for p in with_hash if (p.tx_hash or "").lower() not in known]
    if foreign:  # no bytes of ours (a registration's own transaction paid it): its receipt
        receipts = outbox.node.receipts(list(dict.fromkeys(
            (p.tx_hash or "").lower() for p in foreign)))
        mined += [(p, rc.block_number) for p in foreign
                  if (rc := receipts.get((p.tx_hash or "").lower())) is not None and rc.ok]
    for p in with_hash:
        o = outcomes.get((p.tx_hash or "").lower())
        if o is None:
            continue
        if o.ok:
            mined.append((p, o.block_number if o.block_number is not None else -1))
        elif o.status == TxStatus.REVERTED:
            gone.append(p)
        elif o.status == TxStatus.REPLACED:
            replaced.append(p)
        elif o.status == TxStatus.FAILED or o.gave_up:
            failed.append((p.address, p.kind, f"{p.kind} transaction {p.tx_hash}: {o.reason}"))
    store.mark_payments_failed(ledger, failed)
    if gone:
        reverted(gone)
    if replaced:
        _reconcile(store, ledger, replaced, paid)
    return mined


def _adopt(outbox: Outbox, payments: Sequence[Payment], families: Sequence[str]) -> set[str]:
    """Transactions a ledger of an older version recorded (raw bytes, no outbox row) go into
    the outbox, so they are followed like any other; returns the families it knows now."""
    known = outbox.known(families)
    rows = {p.tx_hash: (p.raw_tx, p.kind, p.address) for p in payments
            if p.tx_hash and p.raw_tx and p.raw_tx != IN_OUTBOX
            and p.tx_hash.lower() not in known}
    if rows:
        log.info("%d transactions an older ledger recorded are taken into the outbox",
                 len(rows))
        known.update(outbox.adopt(list(rows.values())))
    return known


def _reconcile(store: StateStore, ledger: str, payments: Sequence[Payment], paid: Paid) -> None:
    """Rows whose transaction can never be mined: confirmed if the chain shows them paid
    anyway, else back to pending -- read from the chain *before* anything is signed again."""
    done: list[tuple[str, str, int]] = []
    for kind in sorted({p.kind for p in payments}):
        rows = [p for p in payments if p.kind == kind]
        found = paid(kind, rows)
        done += [(p.address, kind, -1) for p in rows if p.address in found]
    confirmed = {(a, k) for a, k, _ in done}
    again = [(p.address, p.kind) for p in payments if (p.address, p.kind) not in confirmed]
    log.info("%d payments lost their transaction to another one using its nonce: %d found "
             "paid on chain, %d to be signed again", len(payments), len(done), len(again))
    with store.transaction():
        store.mark_payments_confirmed(ledger, done)
        store.reset_payments(ledger, again)


def retry(outbox: Outbox, store: StateStore, ledger: str, failed: Sequence[Payment]) -> None:
    """A new run tries ``failed`` rows again: one whose transaction the outbox still holds
    open (an earlier run gave up waiting for it) is resumed as submitted, never signed anew;
    the rest go back to pending."""
    if not failed:
        return
    families = [p.tx_hash for p in failed if p.tx_hash]
    live = {t.family for t in outbox.store.txs(outbox.chain, families=families)
            if t.status.open} if families else set()
    resume = [p for p in failed if p.tx_hash and p.tx_hash.lower() in live]
    if resume:
        log.info("%d failed payments still have a transaction on its way: resumed", len(resume))
    with store.transaction():
        store.mark_payments_submitted(ledger, [
            (p.address, p.kind, p.tx_hash or "", p.raw_tx or "", p.nonce or 0) for p in resume])
        store.reset_payments(ledger, [(p.address, p.kind) for p in failed if p not in resume])
