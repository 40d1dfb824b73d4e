"""The sovereign importer (``eth``): users keep their own keys.

Per user: a v3 keyfile under ``keystore/`` (made in a process pool, one batch ahead of the
sending path), ``AccountsIndex.add(address)`` from the signer, the raw signed transaction under
``tx/`` and, once confirmed, the person record under ``new/`` with the target chain's identity
added. The opening balance, faucet payout and gas come from the syncer
(:mod:`cic_seeding.sync`), which reacts to the registration on chain.

Rerun safety: users the AccountsIndex already has are confirmed without sending; an ``add`` that
reverts because the address is already registered counts as done, so a registration is never
duplicated (the contract refuses duplicates) and never lost. Every ``add`` goes through the
outbox (:mod:`cic_seeding.outbox`): recorded before it is broadcast, sent again byte for byte if
the node loses it, and resumed (not signed anew) by a rerun while it is on its way; one whose
nonce another transaction took is signed again only if the AccountsIndex lacks the user.

Opt-in batch path (``batch_funder``): one ``BatchFunder.registerAndFund`` per chunk of a batch
registers the users *and* pays their opening balances from the signer (allowance), in one
transaction; the AccountsIndex still emits one ``AddressAdded`` per user. The contract skips an
account already registered (and does not fund it), so a resent batch cannot fund twice; the
syncer learns from that transaction itself that the balance is paid.

Executors: ``local`` (default) runs the batches in this process; ``celery`` sends them as
tasks to import workers on any number of machines, each signing with its own key
(:mod:`cic_seeding.importers._celery_exec`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from cic_seeding.chain import funder as batch
from cic_seeding.chain.batch_reader import BatchReader
from cic_seeding.chain.connect import checked_chain, connect
from cic_seeding.chain.registry import ACCOUNTS_INDEX, CicNetwork
from cic_seeding.chain.signer import Signer
from cic_seeding.chain.tx import Call
from cic_seeding.config import DEFAULT_BATCH_SIZE, Settings
from cic_seeding.datadir import DataDir, UserRow
from cic_seeding.errors import SignerError, UsageError
from cic_seeding.importers._keyfiles import KeyfileWriter
from cic_seeding.importers._records import NewRecords, user_problems
from cic_seeding.importers.base import (
    BatchExecutor,
    Importer,
    ImportResult,
    Outcome,
    Submission,
)
from cic_seeding.outbox import Intent, outbox_for
from cic_seeding.outbox import Outcome as TxOutcome
from cic_seeding.remote import RPC_NODE
from cic_seeding.state import REGISTER, OutTx, StateStore, Status, TxStatus, norm
from cic_seeding.units import dataset_to_token

log = logging.getLogger(__name__)

#: Gas limit of one ``AccountsIndex.add`` (a first add costs ~70k).
ADD_GAS = 120_000
#: Times one run signs a user's registration again after another transaction took its nonce.
RESIGN = 3


class EthImporter(Importer):
    """Registers every generated address in the registry's AccountsIndex."""

    name = "eth"
    service = RPC_NODE
    executors = ("local", "celery")
    rechecks_confirmed = True  # one batched eth_call per batch of users

    def __init__(self, settings: Settings, *, network: CicNetwork | None = None,
                 **kw: Any) -> None:
        super().__init__(settings, **kw)
        self.network = network or connect(settings)
        self.client = self.network.client
        self.manifest = self.data.manifest()
        self.chain = checked_chain(self.network, self.settings)  # first: another chain misleads
        self.index = self.network.accounts_index
        self.records = NewRecords(self.data, self.chain)  # new/ records, made in prepare
        self.keys = KeyfileWriter(self.data.keystore, self.manifest.seed,
                                  settings.keystore_password, settings.keystore_kdf,
                                  settings.workers)
        self._send_errors: dict[str, str] = {}
        self.outbox = outbox_for(settings, self.client, self.store)
        self._rows: dict[str, UserRow] = {}
        self._replaced: dict[str, int] = {}  # user -> registrations of it replaced this run
        self._batch_reader: BatchReader | None = None  # made (and probed) at first use
        self.funder = batch.resolve(settings)
        if self.funder is not None and settings.import_executor == "celery":
            raise UsageError("--executor celery does not combine with --batch-funder",
                             hint="the batch path registers 100 users per transaction from one "
                             "signer already: drop one of the two")
        if self.funder is not None and settings.batch_size == DEFAULT_BATCH_SIZE:
            self.batch_size = batch.IMPORT_BATCH  # one full block per batch (unless set)
        #: On a node that mines when asked (a devnet), batches are sent without a block each:
        #: enough of them are in flight to fill ``block_size`` (blocks cost anvil time in
        #: proportion to the whole state), a block comes once that many were sent or when the
        #: oldest batch is waited for; each batch is still prepared while the last is sent.
        #: Unless ``batch_size`` is set (then each batch is a block, as before).
        self._mine_each = not (self.client.explicit_mining and self.funder is None
                               and settings.import_executor == "local"
                               and settings.batch_size == DEFAULT_BATCH_SIZE)
        if not self._mine_each:
            self.in_flight = max(self.in_flight,
                                 -(-self.outbox.node.block_size // self.batch_size))
        self._opening: dict[str, int] = {}
        self._token = ""

    # -- primitives ----------------------------------------------------------------------
    @classmethod
    def sync_users(cls, data: DataDir, store: StateStore) -> dict[str, str]:
        return {norm(r.address): norm(r.address) for r in data.users()}

    def begin(self) -> None:
        """The syncer's cursor starts where this import began (never block 0); on the batch
        path, the BatchFunder's rights and allowance are in place."""
        self._preflight()
        self.store.init_cursor(self.name, str(self.chain), self.client.head())
        if self.funder is not None:
            self._begin_batch(self.funder)

    def executor(self) -> BatchExecutor | None:
        if self.settings.import_executor != "celery":
            return None
        from cic_seeding.importers._celery_exec import CeleryExecutor

        return CeleryExecutor(self)

    def _preflight(self) -> None:
        """Refuse, before anything is written or sent, what would fail every user: another
        chain than the chain spec names, a keystore password other than the earlier runs', a
        signer without gas or (one transaction per user) without the right to add to the
        AccountsIndex."""
        url = self.client.rpc.url
        self.network.check_chain_id(self.chain)
        self.keys.check_password()
        if self.settings.import_executor != "local":
            return  # the workers sign, each with its own key
        me = self.client.signer.address if self.client.signer else ""
        (wei,) = self.client.native_balances([me])
        if wei == 0:
            raise SignerError(f"the signer {me} has no gas (native balance 0) on {url}",
                              hint="send it some native coin, then rerun")
        if self.funder is None and not self.network.is_writer(self.index, me):
            raise SignerError(f"the signer {me} is not a writer of the AccountsIndex "
                              f"{self.index}", hint=f"ask its owner to call addWriter({me}), "
                              "or sign with a writer (-y KEYFILE)")

    def _begin_batch(self, funder: str) -> None:
        """The opening balances of the good balances.csv rows (a bad row costs its user alone:
        ``prepare`` refuses it), and an allowance for exactly those of the users still to
        import that the run does not refuse up front."""
        token = self.network.token(self.settings.token_symbol)
        decimals = self.manifest.decimals
        self._token = token.address
        self._opening = {norm(a): dataset_to_token(v, decimals, token.decimals)
                         for a, v in self.data.read_balances().values.items()}
        batch.grant(self.network, funder, [("AccountsIndex", self.index)],
                    devnet=self.settings.devnet_deployer_signs)
        rows = list(self.data.users())
        skip = self.store.addresses(self.name, [Status.CONFIRMED]) \
            | {norm(a) for a in user_problems(rows)}
        needed = sum(self._opening.get(a, 0) for a in {norm(r.address) for r in rows} - skip)
        batch.ensure_allowance(self.network, token.address, funder, needed)

    def prepare(self, users: Sequence[UserRow]) -> Mapping[str, str]:
        bad = {u.address: reason for u in users if (reason := self.records.check(u))}
        if self.funder is not None:  # registerAndFund pays what begin() read, nothing else
            bad.update({u.address: self._unfunded(u) for u in users
                        if u.address not in bad and norm(u.address) not in self._opening})
        bad.update(self.keys.write([(u.index, u.address) for u in users if u.address not in bad]))
        return bad

    def _unfunded(self, user: UserRow) -> str:
        return (f"the balances.csv row of {user.address} was fixed after this run began (the "
                "run read the opening balances it funds then): rerun to import it")


    def sends(self, users: Sequence[UserRow]) -> list[str]:
        """One ``add`` per user; on the batch path one ``registerAndFund`` per chunk of users,
        paying their opening balances with it."""
        if self.funder is None:
            return [f"{len(users)} registration transactions (AccountsIndex.add)"]
        read = self.data.read_balances()
        owed = sum(read.get(u.address) or 0 for u in users)
        symbol = self.settings.token_symbol or "the token"
        return [f"{-(-len(users) // batch.CHUNK)} registerAndFund transactions through the "
                f"BatchFunder {self.funder}",
                f"{owed / 10 ** self.manifest.decimals:,} {symbol} of opening balances"]

    def done_on_chain(self, users: Sequence[UserRow]) -> Mapping[str, str | None]:
        """Users the AccountsIndex holds: one eth_call per 500 by BatchReader's state override
        (anvil: 250 users in ~4 ms, where an eth_call each took ~15-30 ms), or one eth_call
        each, in one JSON-RPC batch, on a node without overrides."""
        if self._batch_reader is None:
            self._batch_reader = BatchReader(self.client.rpc)
        if self._batch_reader.works:
            found = self._batch_reader.have(self.index, [u.address for u in users])
            return {u.address: u.address for u in users if found[u.address.lower()]}
        have = self.client.call_many([(self.index, ACCOUNTS_INDEX.fn("have"), (u.address,))
                                      for u in users])
        return {u.address: u.address for u, h in zip(users, have, strict=True) if h is True}

    def _signer(self) -> Signer:
        if self.client.signer is None:
            raise SignerError("the eth importer needs a signing key",
                              hint="give --devnet DIR or -y KEYFILE with its password")
        return self.client.signer

    def submit(self, users: Sequence[UserRow]) -> list[Submission]:
        """Registrations through the outbox; a user with a registration an earlier run
        recorded and that is still on its way resumes it instead of signing another."""
        self._rows.update((norm(u.address), u) for u in users)
        if self.funder is not None:
            return self._submit_batch(self.funder, users)
        resumed = self.outbox.open_families(REGISTER, [u.address for u in users])
        if resumed:
            log.info("%d registrations recorded by an earlier run are still on their way: "
                     "resumed, not signed again", len(resumed))
        fresh = [u for u in users if norm(u.address) not in resumed]
        intents = [Intent(Call(self.index, ACCOUNTS_INDEX.encode("add", u.address),
                               gas=ADD_GAS), REGISTER, u.address) for u in fresh]
        sent = self.outbox.send(self._signer(), intents, on_record=self._record,
                                mine=self._mine_each)
        for user, tx in zip(fresh, sent, strict=True):
            resumed[norm(user.address)] = tx.family
            if tx.status == TxStatus.FAILED:
                self._send_errors[norm(user.address)] = f"add(): {tx.reason}"
        return [Submission(u.address, resumed[norm(u.address)], u.address) for u in users]

    def _submit_batch(self, funder: str, users: Sequence[UserRow]) -> list[Submission]:
        """One registerAndFund per chunk; every user of a chunk shares its transaction."""
        batcher = batch.Batcher(funder)
        groups = batch.chunks([(u.address, self._opening.get(norm(u.address), 0))
                               for u in users])
        intents = [Intent(batcher.register_and_fund(self.index, self._token, g),
                          "register_batch", g[0][0]) for g in groups]
        sent = self.outbox.send(self._signer(), intents, on_record=self._record)
        subs = []
        for group, tx in zip(groups, sent, strict=True):
            for address, _ in group:
                if tx.status == TxStatus.FAILED:
                    self._send_errors[norm(address)] = f"registerAndFund(): {tx.reason}"
                subs.append(Submission(address, tx.family, address))
        return subs

    def _record(self, start: int, signed: Sequence[OutTx]) -> None:
        """The signed registrations, recorded and about to be broadcast (the outbox has saved
        them under tx/ already); an import worker collects them here for its reply."""

    def outcomes(self, submissions: Sequence[Submission]) -> list[Outcome]:
        """Wait for the registrations (the outbox re-sends lost ones, byte for byte). A
        registration whose nonce another transaction took, or that reverted, counts if the
        AccountsIndex has the user; a replaced one it lacks is signed again (at most
        ``RESIGN`` times a run)."""
        out: dict[str, Outcome] = {}
        todo = []
        for s in submissions:
            error = self._send_errors.pop(norm(s.address), None)
            if error is not None:
                out[s.address] = Outcome(s.address, False, reason=f"the node refused {error}")
            else:
                todo.append(s)
        while todo:
            results = self.outbox.wait([s.ref for s in todo], stop=self.stop)
            if self.stop.is_set() and not all(o.final for o in results.values()):
                raise KeyboardInterrupt
            unsure = [s for s in todo if results[s.ref.lower()].status in
                      (TxStatus.REPLACED, TxStatus.REVERTED)]
            have = self.client.call_many([(self.index, ACCOUNTS_INDEX.fn("have"),
                                           (s.address,)) for s in unsure]) if unsure else []
            registered = {s.address for s, h in zip(unsure, have, strict=True) if h is True}
            again = []
            for s in todo:
                o = results[s.ref.lower()]
                if o.ok or s.address in registered:
                    out[s.address] = Outcome(s.address, True, s.address)
                elif o.status == TxStatus.REPLACED and self._resigned(s.address):
                    again.append(s)
                else:
                    out[s.address] = Outcome(s.address, False, reason=self._why(s, o))
            todo = self._resubmit(again) if again else []
        return [out[s.address] for s in submissions]

    def _resigned(self, address: str) -> bool:
        """Count one more signature for a replaced registration; False past ``RESIGN``."""
        n = self._replaced.get(norm(address), 0) + 1
        self._replaced[norm(address)] = n
        return n <= RESIGN

    def _resubmit(self, subs: Sequence[Submission]) -> list[Submission]:
        """Sign again the registrations of users the chain shows unregistered after their
        transaction was replaced (the batch path: their chunks again; the contract skips a
        user already registered)."""
        log.info("%d registrations were replaced and their users are not registered: "
                 "signed again", len(subs))
        rows = [self._rows[norm(s.address)] for s in subs]
        new = self.submit(rows)
        self._resubmitted(new)
        return new

    def _resubmitted(self, subs: Sequence[Submission]) -> None:
        """The users' state names their new transactions."""
        self.store.mark_submitted(self.name, [(s.address, s.kind, s.ref, s.target)
                                              for s in subs])

    def _why(self, s: Submission, o: TxOutcome) -> str:
        if o.status == TxStatus.REVERTED and self.funder is not None:
            return (f"registerAndFund() transaction {o.tx_hash} reverted (is the BatchFunder "
                    f"{self.funder} a writer of the AccountsIndex, and does the signer hold "
                    "and allow it enough tokens?)")
        if o.status == TxStatus.REVERTED:
            call = Call(self.index, ACCOUNTS_INDEX.encode("add", s.address), gas=ADD_GAS)
            return f"add() reverted{self.client.revert_reason(call)} (is the signer a writer " \
                   f"of the AccountsIndex {self.index}?)"
        if o.status == TxStatus.REPLACED:
            return f"registration {s.ref} was replaced {RESIGN} times (another sender uses " \
                   "the signer's nonces?); a rerun signs it again"
        return f"registration {s.ref}: {o.reason or o.status.value}"

    def finish(self, done: Sequence[tuple[UserRow, str]]) -> None:
        self.records.write((u.address, t) for u, t in done)

    def run(self, *, limit: int | None = None) -> ImportResult:
        try:
            result = super().run(limit=limit)
        finally:
            log.info("%s import: %s", self.name, self.outbox.counts.line())
        result.transactions = self.outbox.counts.to_dict()
        return result

    def close(self) -> None:
        self.keys.close()
        super().close()
