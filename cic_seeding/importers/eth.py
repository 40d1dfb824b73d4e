"""The sovereign importer (``eth``): users keep their own keys.

Per user: a v3 keyfile under ``keystore/`` (made in a process pool, one batch ahead of the
sending path), ``AccountsIndex.add(address)`` from the signer, the raw signed transaction under
``tx/`` and, once confirmed, the person record under ``new/`` with the target chain's identity
added. The opening balance, faucet payout and gas come from the syncer
(:mod:`cic_seeding.sync`), which reacts to the registration on chain.

Rerun safety: users the AccountsIndex already has are confirmed without sending; an ``add`` that
reverts because the address is already registered counts as done, so a registration is never
duplicated (the contract refuses duplicates) and never lost.

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
import time
from collections.abc import Mapping, Sequence
from typing import Any

from cic_seeding.chain import funder as batch
from cic_seeding.chain.connect import checked_chain, connect
from cic_seeding.chain.registry import ACCOUNTS_INDEX, CicNetwork
from cic_seeding.chain.signer import SignedTx
from cic_seeding.chain.tx import Call
from cic_seeding.config import DEFAULT_BATCH_SIZE, Settings
from cic_seeding.datadir import DataDir, UserRow
from cic_seeding.errors import SignerError, UsageError
from cic_seeding.importers._keyfiles import KeyfileWriter
from cic_seeding.importers._records import record_problem, write_new_records
from cic_seeding.importers.base import BatchExecutor, Importer, Outcome, Submission
from cic_seeding.remote import RPC_NODE, poll
from cic_seeding.state import StateStore, Status, norm
from cic_seeding.units import dataset_to_token

log = logging.getLogger(__name__)

#: Gas limit of one ``AccountsIndex.add`` (a first add costs ~70k).
ADD_GAS = 120_000


class EthImporter(Importer):
    """Registers every generated address in the registry's AccountsIndex."""

    name = "eth"
    service = RPC_NODE
    executors = ("local", "celery")
    #: Seconds to wait for a batch's receipts before leaving it to a rerun.
    confirm_timeout: float = 120.0

    def __init__(self, settings: Settings, *, network: CicNetwork | None = None,
                 **kw: Any) -> None:
        super().__init__(settings, **kw)
        self.network = network or connect(settings)
        self.client = self.network.client
        self.manifest = self.data.manifest()
        self.chain = checked_chain(self.network, self.settings)  # first: another chain misleads
        self.index = self.network.accounts_index
        self.keys = KeyfileWriter(self.data.keystore, self.manifest.seed,
                                  settings.keystore_password, settings.keystore_kdf,
                                  settings.workers)
        self._send_errors: dict[str, str] = {}
        self.funder = batch.resolve(settings)
        if self.funder is not None and settings.import_executor == "celery":
            raise UsageError("--executor celery does not combine with --batch-funder",
                             hint="the batch path registers 100 users per transaction from one "
                             "signer already: drop one of the two")
        if self.funder is not None and settings.batch_size == DEFAULT_BATCH_SIZE:
            self.batch_size = batch.IMPORT_BATCH  # one full block per batch (unless set)
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
        chain than the chain spec names, a signer without gas or (one transaction per user)
        without the right to add to the AccountsIndex."""
        url = self.client.rpc.url
        self.network.check_chain_id(self.chain)
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
        token = self.network.token(self.settings.token_symbol)
        decimals = self.manifest.decimals
        self._token = token.address
        self._opening = {norm(a): dataset_to_token(v, decimals, token.decimals)
                         for a, v in self.data.balances().items()}
        batch.grant(self.network, funder, [("AccountsIndex", self.index)],
                    devnet=self.settings.devnet_deployer_signs)
        done = self.store.addresses(self.name, [Status.CONFIRMED])
        needed = sum(v for a, v in self._opening.items() if a not in done)
        batch.ensure_allowance(self.network, token.address, funder, needed)

    def prepare(self, users: Sequence[UserRow]) -> Mapping[str, str]:
        bad = {u.address: reason for u in users if (reason := record_problem(self.data, u))}
        bad.update(self.keys.write([(u.index, u.address) for u in users if u.address not in bad]))
        return bad


    def done_on_chain(self, users: Sequence[UserRow]) -> Mapping[str, str | None]:
        have = self.client.call_many([(self.index, ACCOUNTS_INDEX.fn("have"), (u.address,))
                                      for u in users])
        return {u.address: u.address for u, h in zip(users, have, strict=True) if h is True}

    def submit(self, users: Sequence[UserRow]) -> list[Submission]:
        if self.funder is not None:
            return self._submit_batch(self.funder, users)
        calls = [Call(self.index, ACCOUNTS_INDEX.encode("add", u.address), gas=ADD_GAS)
                 for u in users]
        sent = self.client.send(calls, before_broadcast=self._record)
        subs = []
        for user, (signed, error) in zip(users, sent, strict=True):
            if error is not None:
                self._send_errors[user.address.lower()] = f"the node refused add(): {error}"
            subs.append(Submission(user.address, signed.tx_hash, user.address))
        return subs

    def _submit_batch(self, funder: str, users: Sequence[UserRow]) -> list[Submission]:
        """One registerAndFund per chunk; every user of a chunk shares its transaction."""
        batcher = batch.Batcher(funder)
        groups = batch.chunks([(u.address, self._opening.get(norm(u.address), 0))
                               for u in users])
        calls = [batcher.register_and_fund(self.index, self._token, g) for g in groups]
        sent = self.client.send(calls, before_broadcast=self._record)
        subs = []
        for group, (signed, error) in zip(groups, sent, strict=True):
            for address, _ in group:
                if error is not None:
                    self._send_errors[address.lower()] = \
                        f"the node refused registerAndFund(): {error}"
                subs.append(Submission(address, signed.tx_hash, address))
        return subs

    def _record(self, signed: Sequence[SignedTx]) -> None:
        """Every raw signed transaction lands under tx/ before it is broadcast."""
        for tx in signed:
            self.data.tx.put(tx.tx_hash, tx.raw.encode())

    def outcomes(self, submissions: Sequence[Submission]) -> list[Outcome]:
        hashes = list(dict.fromkeys(s.ref for s in submissions
                                    if s.address.lower() not in self._send_errors))
        receipts = self._receipts(hashes)
        unsure = [s for s in submissions if s.ref not in receipts or not receipts[s.ref].ok]
        registered = set()
        if unsure:
            have = self.client.call_many([(self.index, ACCOUNTS_INDEX.fn("have"), (s.address,))
                                          for s in unsure])
            registered = {s.address for s, h in zip(unsure, have, strict=True) if h is True}
        out = []
        for s in submissions:
            receipt = receipts.get(s.ref)
            if (receipt is not None and receipt.ok) or s.address in registered:
                out.append(Outcome(s.address, True, s.address))
            else:
                out.append(Outcome(s.address, False, reason=self._why(s, receipt is not None)))
        return out

    def _receipts(self, hashes: Sequence[str]) -> dict[str, Any]:
        """The receipts of ``hashes`` mined within ``confirm_timeout`` (or until stopped)."""
        found: dict[str, Any] = {}

        def all_found() -> bool:
            found.update(self.client.receipts([h for h in hashes if h not in found]))
            return all(h in found for h in hashes)

        poll(all_found, until=time.monotonic() + self.confirm_timeout, first=0.2, cap=0.2,
             stop=self.stop, between=self.client.mine if self.client.explicit_mining else None)
        return found

    def _why(self, s: Submission, mined: bool) -> str:
        if s.address.lower() in self._send_errors:
            return self._send_errors.pop(s.address.lower())
        if mined and self.funder is not None:
            return (f"registerAndFund() transaction {s.ref} reverted (is the BatchFunder "
                    f"{self.funder} a writer of the AccountsIndex, and does the signer hold and "
                    "allow it enough tokens?)")
        if mined:
            call = Call(self.index, ACCOUNTS_INDEX.encode("add", s.address), gas=ADD_GAS)
            return f"add() reverted{self.client.revert_reason(call)} (is the signer a writer " \
                   f"of the AccountsIndex {self.index}?)"
        return f"add() transaction {s.ref} not mined within {self.confirm_timeout:.0f}s; " \
               "a rerun sends it again"

    def finish(self, done: Sequence[tuple[UserRow, str]]) -> None:
        write_new_records(self.data, self.chain, ((u.address, t) for u, t in done))

    def close(self) -> None:
        self.keys.close()
        super().close()
