"""Opening balances of custodial users, paid as transfers the custodial engine signs.

The engine's signer holds gas and writer rights, not tokens (the token holder is the main
signer, whose key the engine does not hold). So an opening balance goes in two legs, each
exactly once:

1. **float** -- the main signer transfers (or mints, with ``mint``) the balances of a batch of
   users to the engine's signer in one transaction, under the
   :class:`~cic_seeding.sync.payer.Payer` discipline: signed, recorded as each payment's
   transaction (``submitted``, with its raw bytes) before it is broadcast, re-sent byte for
   byte if the node lost it, signed again only if it can never be mined;
2. **transfer** -- once the float is mined, ``cic_custodial.token.transfer`` from the engine's
   signer to the user, request id ``fund:<chain spec>:<address>``. The engine queues one
   transfer per request id and answers a repeated request with that transfer, so asking again
   (a rerun, a lost reply) never pays twice. The transfer's hash and nonce replace the float's
   in the ledger (without raw bytes: nothing of ours to re-send); the payment is confirmed
   when the engine reports it mined, and fails with the engine's words if it gave up.

A ``submitted`` payment with raw bytes is at leg 1, one without at leg 2; a process killed at
any point resumes from the ledger: an unsent float is signed, a recorded one checked (or
re-sent), a mined one's transfer asked for (again). The engine's signer receives each float
once and passes it on once.

A reply that does not come within ``custodial_timeout`` (each request asked twice) ends the
run with a CustodialTimeoutError naming the user and the task ids; the payments stay where
they were, so the rerun asks again without floating anything twice. A transfer the engine
refuses or gives up fails the payment with the engine's words and leaves its float with the
engine's signer. (A rerun tries failed payments again: it floats once more, and the engine
answers the same request id with the same failed transfer -- it never makes a second one, so
such a user needs an operator, not a rerun.)

Faucet payouts and gas gifts are not the syncer's: the importer asks the engine for them when
it creates the account. (A ledger from before that keeps its ``faucet``/``gas`` payments,
paid from the main signer as for ``eth``.)

The engine's transfers go into the data directory's ``tx/`` beside ours (the outbox saves the
floats; the syncer, the registrations): each once the engine reports it mined, fetched from the
node by hash (:class:`~cic_seeding.outbox.archive.TxArchive`) *before* the payment is
confirmed, so a killed syncer saves it on its rerun.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from eth_utils import is_hex

from cic_seeding.chain.signer import Signer
from cic_seeding.custodial import (
    TASK_TRANSFER,
    TASK_TX_STATUS,
    CustodialClient,
    Reply,
    engine_client,
    engine_status,
)
from cic_seeding.errors import CustodialTimeoutError
from cic_seeding.outbox import Outbox, TxArchive
from cic_seeding.remote import exhausted
from cic_seeding.state import FUND, Payment, StateStore, norm
from cic_seeding.sync.funding import Funding, SyncSetup, opening_balances
from cic_seeding.sync.payer import Payer
from cic_seeding.sync.port import Call, SyncChain
from cic_seeding.sync.syncer import PaymentPlan, SyncOptions

log = logging.getLogger(__name__)

#: Seconds to wait for the engine's status answer when a sync run begins.
STATUS_TIMEOUT = 15.0
#: Queue rows asked about per ``cic_custodial.tx.status`` request.
STATUS_PAGE = 500
MINED, FAILED = "mined", "failed"


def request_id(chain_key: str, address: str) -> str:
    """The engine request id of ``address``'s opening balance on the chain ``chain_key``."""
    return f"fund:{chain_key}:{norm(address)}"


class CustodialPayer(Payer):
    """Pays opening balances through the custodial engine (see the module documentation);
    any other kind of payment from the main signer, as :class:`Payer` does."""

    def __init__(self, store: StateStore, importer: str, chain: SyncChain, outbox: Outbox,
                 signer: Signer, fund: Funding, client: CustodialClient,
                 engine_signer: str, *, token_symbol: str | None, timeout: float,
                 archive: TxArchive | None = None) -> None:
        """``archive``: where the engine's transactions for our users are saved (``tx/``)."""
        super().__init__(store, importer, chain, outbox, signer, fund.build, self._groups)
        self.fund = fund
        self.client = client
        self.archive = archive
        self.engine_signer = norm(engine_signer)
        self.token_symbol = token_symbol
        self.timeout = timeout
        self._tx_ids: dict[str, int] = {}  # recipient -> the engine's queue row of its transfer

    @property
    def settles_each_batch(self) -> bool:
        """No: a settle hands mined floats to the engine (leg 2), which a round does once all
        of its batches are floated."""
        return False

    def _groups(self, payments: Sequence[Payment]) -> list[tuple[Call, list[Payment]]]:
        """One float for the opening balances, one transaction for anything else."""
        funds = [p for p in payments if p.kind == FUND]
        out = [(self.fund.build(p), [p]) for p in payments if p.kind != FUND]
        if funds:
            out.append((self.fund.give(self.engine_signer, sum(p.amount for p in funds)),
                        funds))
        return out

    def settle(self, payments: Sequence[Payment]) -> int:
        """Check submitted ``payments``; returns how many were confirmed now."""
        others = [p for p in payments if p.kind != FUND]
        settled = super().settle(others) if others else 0
        funds = [p for p in payments if p.kind == FUND and p.tx_hash]
        floated = self._floated([p for p in funds if p.raw_tx])
        asked = self._ask(floated + [p for p in funds if not p.raw_tx
                                     and p.address not in self._tx_ids])
        return settled + self._track([p for p in funds if not p.raw_tx
                                      and p.address in self._tx_ids] + asked)

    # -- leg 1: the float -------------------------------------------------------------------
    def _floated(self, payments: Sequence[Payment]) -> list[Payment]:
        """Those ``payments`` whose float is mined; a reverted float fails them, a lost one
        is sent again, a replaced one floated again (the Payer discipline)."""
        return [p for p, _ in self._followed(payments)]

    def paid_on_chain(self, kind: str, addresses: Sequence[str]) -> set[str]:
        """A replaced float never reached the engine's signer, and only a mined float leads
        to the engine's transfer: its users are not paid."""
        return set() if kind == FUND else super().paid_on_chain(kind, addresses)

    # -- leg 2: the engine's transfer -------------------------------------------------------
    def _ask(self, payments: Sequence[Payment]) -> list[Payment]:
        """Ask the engine for the transfers of ``payments`` (created once per request id);
        record each in the ledger; returns those the engine has a transfer for."""
        if not payments:
            return []
        requests = [{"sender": self.engine_signer, "recipient": p.address,
                     "amount": p.amount, "token": self.token_symbol,
                     "request_id": request_id(self.chain.chain_key, p.address)}
                    for p in payments]
        since = time.monotonic()
        sent = self.client.send(TASK_TRANSFER, requests)
        asked, replies = self.client.gather(TASK_TRANSFER, requests, sent, since=since,
                                            timeout=self.timeout)
        recorded, failed, silent = [], [], []
        for p, ids in zip(payments, asked, strict=True):
            reply = self.client.best(ids, replies)
            broken = next((b for t in ids if (b := self.client.reply_error(t))), None)
            if reply is not None and reply.ok:
                row = _transfer_row(reply)
                if row is None:
                    failed.append((p.address, FUND, f"the custodial engine answered the "
                                   f"transfer to user {p.address} (task {reply.task_id}) "
                                   f"without a queue row: {str(reply.result)[:200]}"))
                    continue
                self._tx_ids[p.address] = row[0]
                recorded.append((p, row))
            elif broken is not None:
                failed.append((p.address, FUND, f"user {p.address}: {broken}"))
            elif reply is not None and not reply.transient:
                failed.append((p.address, FUND, f"the custodial engine refused the transfer of "
                               f"{p.amount} to user {p.address} (task {reply.task_id}): "
                               f"{reply.error}"))
            elif reply is None:
                silent.append((p, ids))
            # a transient error: asked again next round
        self.store.mark_payments_submitted(self.importer, [
            (p.address, FUND, tx_hash, "", nonce) for p, (_, tx_hash, nonce) in recorded])
        self.store.mark_payments_failed(self.importer, failed)
        self.client.forget(t for ids in asked for t in ids)
        if silent:
            raise self._timeout(TASK_TRANSFER, [(p.address, ids) for p, ids in silent])
        return [p for p, _ in recorded]

    def _track(self, payments: Sequence[Payment]) -> int:
        """Confirm the ``payments`` whose transfer the engine reports mined (saved under
        ``tx/`` first); fail those it gave up on; returns how many were confirmed."""
        confirmed = 0
        for i in range(0, len(payments), STATUS_PAGE):
            page = payments[i:i + STATUS_PAGE]
            rows = self._status([self._tx_ids[p.address] for p in page],
                                [p.address for p in page])
            done, failed, moved = [], [], []
            mined: dict[str, str] = {}  # tx hash -> what it paid
            for p in page:
                row = rows.get(self._tx_ids[p.address])
                if row is None:
                    continue
                status, tx_hash = row.get("status"), row.get("tx_hash")
                if status == MINED:
                    done.append((p.address, FUND, int(row.get("block_number") or 0)))
                    if isinstance(tx_hash, str):
                        mined[tx_hash] = f"opening balance of {p.address}"
                elif status == FAILED:
                    failed.append((p.address, FUND, _failure(p, row, self.engine_signer)))
                if isinstance(tx_hash, str) and tx_hash != p.tx_hash:  # signed again
                    moved.append((p.address, FUND, tx_hash, "", int(row.get("nonce", -1))))
            if mined and self.archive is not None:
                self.archive.fetch(mined)
            with self.store.transaction():
                self.store.mark_payments_submitted(self.importer, moved)
                self.store.mark_payments_confirmed(self.importer, done)
                self.store.mark_payments_failed(self.importer, failed)
            confirmed += len(done)
        return confirmed

    def _status(self, tx_ids: Sequence[int], users: Sequence[str]) -> dict[int, dict[str, Any]]:
        """The engine's queue rows ``tx_ids`` (of the transfers to ``users``), by id."""
        request = {"tx_ids": list(tx_ids)}
        since = time.monotonic()
        (sent,) = self.client.send(TASK_TX_STATUS, [request])
        (ids,), replies = self.client.gather(TASK_TX_STATUS, [request], [sent], since=since,
                                             timeout=self.timeout)
        reply = self.client.best(ids, replies)
        broken = next((b for t in ids if (b := self.client.reply_error(t))), None)
        self.client.forget(ids)
        if broken is not None:
            raise broken
        if reply is None:  # one request for them all: it names the first user
            raise self._timeout(TASK_TX_STATUS, [(u, ids) for u in users])
        if not reply.ok:  # the engine could not read its queue: the next round asks again
            log.warning("the custodial engine did not report its transfers (task %s): %s",
                        reply.task_id, reply.error)
            return {}
        rows = reply.result.get("txs")
        return {int(r["id"]): r for r in rows if isinstance(r, dict) and "id" in r} \
            if isinstance(rows, list) else {}

    def _timeout(self, task: str, silent: Sequence[tuple[str, Sequence[str]]]
                 ) -> CustodialTimeoutError:
        """The error for requests never answered (each asked twice): the first user, its
        task ids and how many more; ``exhausted``, as asking again is done."""
        user, ids = silent[0]
        err = self.client.timeout_error(task, ", ".join(ids), self.timeout, user=user,
                                        others=len(silent) - 1)
        return exhausted(err)


def _transfer_row(reply: Reply) -> tuple[int, str, int] | None:
    """``(queue row id, tx hash, nonce)`` of a transfer reply, None if it lacks them."""
    tx_id, tx_hash, nonce = (reply.result.get(k) for k in ("tx_id", "tx_hash", "nonce"))
    if not isinstance(tx_id, int) or not isinstance(tx_hash, str) or not is_hex(tx_hash):
        return None
    return tx_id, tx_hash, nonce if isinstance(nonce, int) else -1


def _failure(payment: Payment, row: Mapping[str, Any], engine_signer: str) -> str:
    return (f"the custodial engine gave up the transfer of {payment.amount} to user "
            f"{payment.address} (its tx {row.get('id')}, {row.get('tx_hash')}): "
            f"{row.get('error_class') or 'failed'}: {row.get('error') or 'no reason given'}; "
            f"the float stays with the engine's signer {engine_signer}")


def custodial_plan(setup: SyncSetup) -> PaymentPlan:
    """The opening balance of each user (the engine paid faucet and gas with the account)."""
    return PaymentPlan(opening_balances(setup))


def custodial_payments(setup: SyncSetup, options: SyncOptions
                       ) -> tuple[Payer, PaymentPlan, SyncOptions]:
    """The opening balance of each user, through the engine (the ``custodial`` scheme).

    Asks the engine first (it must register accounts in this network's AccountsIndex): a
    misconfigured engine fails the run before anything is floated.
    """
    settings = setup.settings
    client = engine_client(settings)
    setup.resources.callback(client.close)
    status = engine_status(client, setup.network.accounts_index,
                           timeout=min(settings.custodial_timeout, STATUS_TIMEOUT))
    plan = custodial_plan(setup)
    payer = CustodialPayer(setup.store, setup.importer, setup.chain, setup.outbox,
                           setup.signer, setup.fund, client,
                           str(status["signer"]), token_symbol=settings.token_symbol,
                           timeout=settings.custodial_timeout,
                           archive=setup.archive)
    return payer, plan, options
