"""The engine's operations as plain functions of one :class:`Engine` (tasks are thin adapters).

An Engine holds the storage, the key box, the chain connection signing with the engine's key
and the transaction queue; it is shared by the threads of a worker process.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from eth_utils import is_address

from cic_seeding.chain.connect import connect
from cic_seeding.chain.registry import ACCOUNTS_INDEX, FAUCET, TOKEN, CicNetwork
from cic_seeding.chain.signer import Signer
from cic_seeding.chain.tx import Call
from cic_seeding.errors import ConfigError, CustodialError, CustodialKeyError

from .config import EngineConfig
from .keys import CANARY, KeyBox, new_key
from .storage import Storage, placeholders, values
from .stores import open_storage
from .txqueue import FAILED, Queued, TxQueue, TxRow

log = logging.getLogger(__name__)

REGISTER, GAS, FAUCET_KIND, TRANSFER = "register", "gas", "faucet", "transfer"
REGISTER_GAS, GAS_GIFT_GAS, FAUCET_GAS, TRANSFER_GAS = 120_000, 21_000, 200_000, 90_000
_REQUEST_ID = re.compile(r"^[\w.:@/+-]{1,200}$")
#: Most create requests one ``account.create_many`` task may carry.
MAX_BATCH = 1000
#: Most rows one INSERT (or ids one IN list) carries: well inside SQLite's and PostgreSQL's
#: limits on parameters per statement.
ROWS_PER_STATEMENT = 200
T = TypeVar("T")


def _address(value: Any, what: str) -> str:
    if not isinstance(value, str) or not is_address(value):
        raise CustodialError(f"{what} {value!r} is not an address (0x and 40 hex characters)")
    return value.lower()


def _request_id(value: Any) -> str:
    if not isinstance(value, str) or not _REQUEST_ID.match(value):
        raise CustodialError(f"request id {value!r} is not 1-200 characters of letters, digits "
                             "and . : @ / + - _")
    return value.lower() if is_address(value) else value


@dataclass(frozen=True)
class AccountRequest:
    """One account asked for: its request id, and what it should come with."""

    request_id: str
    gas_gift: int = 0
    faucet: bool = False


def _account_request(item: Any) -> AccountRequest:
    """A create request (``{"request_id", "gas_gift"?, "faucet"?}``) checked; CustodialError
    saying what is wrong with it."""
    if not isinstance(item, dict):
        raise CustodialError(f"a create request {str(item)[:100]!r} is not an object")
    request_id = _request_id(item.get("request_id"))
    gas_gift, faucet = item.get("gas_gift", 0), item.get("faucet", False)
    if not isinstance(gas_gift, int) or isinstance(gas_gift, bool):
        raise CustodialError(f"gas gift {gas_gift!r} of request {request_id} is not an integer")
    if gas_gift < 0:
        raise CustodialError(f"gas gift {gas_gift} is negative")
    if not isinstance(faucet, bool):
        raise CustodialError(f"faucet {faucet!r} of request {request_id} is not true or false")
    return AccountRequest(request_id, gas_gift, faucet)


def address_call(selector: bytes, address: str) -> bytes:
    """The call data of a function whose one argument is an address: its selector and the
    address as one 32-byte word (what eth-abi gives, at a twentieth of the cost; an engine
    encodes two such calls per account)."""
    return selector + bytes(12) + bytes.fromhex(address[2:])


def _chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


@dataclass
class Engine:
    storage: Storage
    keys: KeyBox
    network: CicNetwork
    signer: Signer
    queue: TxQueue
    #: Called with how many transactions were queued, once committed: the dispatcher of this
    #: process, if it runs one, looks at once when that makes a batch.
    on_queued: Callable[[int], None] = field(default=lambda count: None, repr=False)

    @property
    def chain_id(self) -> int:
        return self.queue.chain_id

    # -- accounts -------------------------------------------------------------------------------
    def create_account(self, request_id: str, *, gas_gift: int = 0,
                       faucet: bool = False) -> dict[str, Any]:
        """The account of ``request_id``: created (new key, sealed, registration queued; a gas
        gift and a faucet payout if asked) or, for a known request id, the existing one."""
        (reply,) = self._create([_account_request(
            {"request_id": request_id, "gas_gift": gas_gift, "faucet": faucet})])
        return reply

    def create_accounts(self, requests: Sequence[Any]) -> list[dict[str, Any]]:
        """:meth:`create_account` for many requests in one database transaction: one reply per
        request, in their order. A request that is not one (a bad request id, a negative gas
        gift) gets ``{"request_id": ..., "error": ...}`` and costs only itself; a request id
        given twice gets the account of its first request twice."""
        if not isinstance(requests, (list, tuple)):
            raise CustodialError(f"create requests must be a list, not {type(requests).__name__}")
        if len(requests) > MAX_BATCH:
            raise CustodialError(f"{len(requests)} create requests in one task; at most "
                                 f"{MAX_BATCH}")
        parsed: list[AccountRequest | str] = []
        for item in requests:
            try:
                parsed.append(_account_request(item))
            except CustodialError as exc:
                parsed.append(str(exc))
        unique = list({r.request_id: r for r in reversed(parsed)
                       if isinstance(r, AccountRequest)}.values())  # the first of each id
        made = {reply["request_id"]: reply for reply in self._create(unique)} if unique else {}
        return [made[r.request_id] if isinstance(r, AccountRequest) else
                {"request_id": item.get("request_id") if isinstance(item, dict) else None,
                 "error": r} for r, item in zip(parsed, requests, strict=True)]

    def _create(self, requests: Sequence[AccountRequest]) -> list[dict[str, Any]]:
        """Create (or find) the accounts of ``requests`` (distinct request ids) and queue what
        each still lacks, all in one database transaction."""
        # sorted: concurrent transactions lock request ids (unique index) in one order
        requests = sorted(requests, key=lambda r: r.request_id)
        fresh = [new_key() for _ in requests]
        sealed = [self.keys.seal(key, address.encode()) for key, address in fresh]
        now = time.time()
        with self.storage.transaction() as cur:
            created: set[str] = set()
            rows = [(address, r.request_id, box, now)
                    for r, (_, address), box in zip(requests, fresh, sealed, strict=True)]
            for chunk in _chunks(rows, ROWS_PER_STATEMENT):
                cur.execute("INSERT INTO accounts (address, request_id, sealed_key, created_at) "
                            f"VALUES {values(4, len(chunk))} ON CONFLICT (request_id) DO NOTHING "
                            "RETURNING request_id", [v for row in chunk for v in row])
                created.update(rid for (rid,) in cur.fetchall())
            addresses = {r.request_id: address for r, (_, address) in zip(requests, fresh,
                                                                          strict=True)
                         if r.request_id in created}
            known = [r.request_id for r in requests if r.request_id not in created]
            for ids in _chunks(known, ROWS_PER_STATEMENT):
                cur.execute("SELECT request_id, address FROM accounts WHERE request_id IN "
                            f"({placeholders(len(ids))})", ids)
                addresses.update(cur.fetchall())
            txs, queued = self._account_txs(cur, [(r, addresses[r.request_id])
                                                  for r in requests])
        if queued:
            self.on_queued(queued)
        if len(requests) > 1:
            log.info("%d accounts created, %d known before, in one transaction", len(created),
                     len(requests) - len(created))
        elif created:
            log.info("account %s created for request %s", addresses[requests[0].request_id],
                     requests[0].request_id)
        return [{"address": addresses[r.request_id], "request_id": r.request_id,
                 "created": r.request_id in created, "txs": txs[r.request_id]}
                for r in requests]

    def _account_txs(self, cur: Any, accounts: Sequence[tuple[AccountRequest, str]]
                     ) -> tuple[dict[str, dict[str, int]], int]:
        """Queue what each account still lacks: registration, gas gift, faucet payout. Nonces
        in that order of kinds, every registration of the batch first (the faucet pays
        registered accounts only). A failed one is queued again. Returns request id ->
        {kind: tx id}, and how many transactions were queued."""
        wanted: dict[str, list[tuple[str, Call]]] = {}
        add, give_to = ACCOUNTS_INDEX.fn("add").selector, FAUCET.fn("giveTo").selector
        for r, address in accounts:
            calls = [(REGISTER, Call(self.network.accounts_index, address_call(add, address),
                                     gas=REGISTER_GAS))]
            if r.gas_gift:
                calls.append((GAS, Call(address, b"", value=r.gas_gift, gas=GAS_GIFT_GAS)))
            if r.faucet:
                calls.append((FAUCET_KIND, Call(self.network.faucet,
                                                address_call(give_to, address),
                                                gas=FAUCET_GAS)))
            wanted[r.request_id] = calls
        have: dict[tuple[str, str], tuple[int, str]] = {}
        for ids in _chunks(list(wanted), ROWS_PER_STATEMENT):
            cur.execute("SELECT request_id, kind, id, status FROM txs WHERE chain_id = %s AND "
                        f"request_id IN ({placeholders(len(ids))}) AND kind IN (%s, %s, %s) "
                        "ORDER BY id FOR UPDATE",
                        (self.chain_id, *ids, REGISTER, GAS, FAUCET_KIND))
            have.update({(rid, kind): (int(id_), status)
                         for rid, kind, id_, status in cur.fetchall()})
        out: dict[str, dict[str, int]] = {rid: {} for rid in wanted}
        new: list[tuple[str, str, Call, str]] = []
        requeued = 0
        for kind in (REGISTER, GAS, FAUCET_KIND):
            for r, address in accounts:
                call = next((c for k, c in wanted[r.request_id] if k == kind), None)
                if call is None:
                    continue
                found = have.get((r.request_id, kind))
                if found is None:
                    new.append((r.request_id, kind, call, address))
                    continue
                id_, status = found
                if status == FAILED:
                    requeued += 1
                    cur.execute("UPDATE txs SET attempts = 0 WHERE id = %s", (id_,))
                    self.queue.requeue(cur, self.queue.load(cur, id_), error_class="retry",
                                       error="asked again", fresh_nonce=True, gas=call.gas)
                out[r.request_id][kind] = id_
        if new:
            queued = self.queue.enqueue_many(cur, self.signer, [
                Queued(call, kind, subject=address, request_id=rid)
                for rid, kind, call, address in new])
            for (rid, kind, _, _), tx_id in zip(new, queued, strict=True):
                out[rid][kind] = tx_id
        # in the order of kinds a reader expects (register, gas, faucet)
        return ({rid: {k: txs[k] for k, _ in wanted[rid] if k in txs}
                 for rid, txs in out.items()}, len(new) + requeued)

    def have(self, addresses: Sequence[str]) -> dict[str, bool]:
        """Per address: does the engine hold its key?"""
        wanted = [_address(a, "address") for a in addresses]
        if not wanted:
            return {}
        with self.storage.transaction() as cur:
            cur.execute(f"SELECT address FROM accounts WHERE address IN "
                        f"({placeholders(len(wanted))})", wanted)
            held = {a for (a,) in cur.fetchall()}
        return {a: a in held for a in wanted}

    def signer_for(self, address: str) -> Signer:
        """The key of the engine's signer or of a custodial account (opened on demand)."""
        address = address.lower()
        if address == self.signer.address.lower():
            return self.signer
        with self.storage.transaction() as cur:
            cur.execute("SELECT sealed_key FROM accounts WHERE address = %s", (address,))
            row = cur.fetchone()
        if row is None:
            raise CustodialError(f"the custodial engine holds no key for {address}")
        return Signer.from_key(self.keys.open(bytes(row[0]), address.encode()))

    # -- tokens ---------------------------------------------------------------------------------
    def balance(self, address: str, token: str | None = None) -> dict[str, Any]:
        """Token (default: the registry's DefaultToken) and native balance of ``address``."""
        address = _address(address, "address")
        found = self.network.token(token)
        (amount,) = self.network.client.call_many([(found.address, TOKEN.fn("balanceOf"),
                                                    (address,))])
        if isinstance(amount, Exception):
            raise CustodialError(f"balanceOf({address}) on {found.address} failed: {amount}")
        (native,) = self.network.client.native_balances([address])
        return {"address": address, "token": found.address.lower(), "symbol": found.symbol,
                "decimals": found.decimals, "balance": int(amount), "native": native}

    def transfer(self, sender: str, recipient: str, amount: int, token: str | None = None,
                 request_id: str | None = None) -> dict[str, Any]:
        """Queue a token transfer signed with ``sender``'s custodial key (or the engine's)."""
        sender, recipient = _address(sender, "sender"), _address(recipient, "recipient")
        if not isinstance(amount, int) or amount <= 0:
            raise CustodialError(f"transfer amount {amount!r} is not a positive integer")
        rid = _request_id(request_id) if request_id is not None else None
        signer = self.signer_for(sender)
        found = self.network.token(token)
        call = Call(found.address, TOKEN.encode("transfer", recipient, amount), gas=TRANSFER_GAS)
        with self.storage.transaction() as cur:
            if rid is not None:
                cur.execute("SELECT id FROM txs WHERE chain_id = %s AND kind = %s AND "
                            "request_id = %s", (self.chain_id, TRANSFER, rid))
                row = cur.fetchone()
                if row is not None:
                    return self._tx_dict(self.queue.load(cur, int(row[0])))
            id_ = self.queue.enqueue(cur, signer, call, kind=TRANSFER, subject=recipient,
                                     request_id=rid)
            reply = self._tx_dict(self.queue.load(cur, id_))
        self.on_queued(1)
        return reply

    @staticmethod
    def _tx_dict(row: TxRow) -> dict[str, Any]:
        return {"tx_id": row.id, "tx_hash": row.tx_hash, "nonce": row.nonce,
                "status": row.status, "signer": row.signer, "kind": row.kind}

    def tx_status(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        """Where the queue rows ``ids`` stand; a mined one with ``raw``, the transaction as
        last signed (the mined one when it hashes to ``tx_hash``; a client checks that)."""
        wanted = [int(i) for i in ids]
        if not wanted:
            return []
        with self.storage.transaction() as cur:
            cur.execute("SELECT id, kind, subject, signer, nonce, tx_hash, status, error_class, "
                        "error, attempts, block_number, CASE WHEN status = 'mined' THEN raw END "
                        "AS raw FROM txs WHERE id IN "
                        f"({placeholders(len(wanted))}) ORDER BY id", wanted)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def status(self) -> dict[str, Any]:
        with self.storage.transaction() as cur:
            cur.execute("SELECT count(*) FROM accounts")
            accounts = int(cur.fetchone()[0])
        return {"signer": self.signer.address.lower(), "chain_id": self.chain_id,
                "registry": self.network.registry.lower(),
                "accounts_index": self.network.accounts_index.lower(), "accounts": accounts,
                "queue": self.queue.counts(), "storage": self.storage.describe()}

    # -- the chain's view of reverted transactions --------------------------------------------
    def effect_done(self, rows: Sequence[TxRow]) -> set[int]:
        """Ids of reverted ``rows`` whose effect is on chain anyway (registered, paid)."""
        client, out = self.network.client, set()
        checks = [(r, (self.network.accounts_index, ACCOUNTS_INDEX.fn("have"), (r.subject,)))
                  for r in rows if r.kind == REGISTER and r.subject]
        checks += [(r, (self.network.faucet, FAUCET.fn("nextTime"), (r.subject,)))
                   for r in rows if r.kind == FAUCET_KIND and r.subject]
        answers = client.call_many([c for _, c in checks]) if checks else []
        for (row, _), answer in zip(checks, answers, strict=True):
            if answer is True or (isinstance(answer, int) and not isinstance(answer, bool)
                                  and answer > 0):
                out.add(row.id)
        return out

    def close(self) -> None:
        self.storage.close()


def open_engine(config: EngineConfig) -> Engine:
    """Connect to the database (PostgreSQL, or SQLite for an embedded engine; creating the
    schema) and the chain, and check the passphrase.

    Raises ConfigError / CustodialError / ChainError that say what to fix.
    """
    storage = open_storage(config.db_url, config.schema)
    try:
        import secrets

        salt = storage.meta("kdf_salt", secrets.token_bytes(16))
        keys = KeyBox.derive(config.passphrase, salt)
        canary = storage.meta("canary", keys.seal(CANARY, b"canary"))
        try:
            keys.open(canary, b"canary")
        except CustodialKeyError:
            raise CustodialKeyError(
                f"the custodial passphrase does not open the keys in {storage.describe()}: it "
                "is not the one they were sealed with",
                hint="give the passphrase this database was created with") from None
        network = connect(config.chain)
        signer = network.client.signer
        if signer is None:
            raise ConfigError("the custodial engine has no signing key")
        network.check_registry()
        engine = Engine(storage, keys, network, signer,
                        TxQueue(storage, network.client, lambda a: engine.signer_for(a),
                                lambda rows: engine.effect_done(rows)))
        return engine
    except BaseException:
        storage.close()
        raise
