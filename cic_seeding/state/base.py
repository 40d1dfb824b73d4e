"""The state store interface: per-user import state, the syncer cursor and the payments ledger.

Three things are persisted per importer (``eth``, ``cic_eth`` ...):

* **users**: one row per user of the data directory, keyed by the user's generated address, with
  a :class:`Status`, the address on the target chain (custodial importers assign a new one), the
  transaction hashes submitted for it by kind, a failure reason and timestamps.
* **cursor**: per (importer, chain) the first block the syncer has not processed yet, plus the
  hashes of recently processed blocks so a reorg can be detected and rolled back.
* **payments**: the idempotency ledger, one row per (importer, address, kind) -- kinds
  ``fund`` (opening balance), ``faucet``, ``gas`` -- enforced unique. A payment is planned
  (``pending``) in the same transaction that advances the cursor past the log that caused it, gets
  its signed transaction recorded (``submitted``) *before* the transaction leaves the process, and
  is ``confirmed`` from its receipt. Re-broadcasting a recorded raw transaction cannot pay twice:
  its nonce makes it single-use.
* **outbox**: every signed transaction of every sender (registrations, payments, transfers),
  recorded *before* it is broadcast: raw bytes, sender, nonce, purpose and owner, and where it
  stands (:class:`TxStatus`). :mod:`cic_seeding.outbox` drives it; fee bumps of one
  transaction share its ``family`` (the hash of its first signature) and its nonce.

Addresses are stored and returned lower-case with ``0x``. Every bulk method takes an iterable and
runs in one transaction; :meth:`StateStore.transaction` groups several calls into one.
"""

from __future__ import annotations

import abc
import enum
import sys
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import TracebackType


class Status(enum.StrEnum):
    """Where one user (or one payment) stands."""

    PENDING = "pending"
    SUBMITTED = "submitted"
    CONFIRMED = "confirmed"
    FAILED = "failed"


class TxStatus(enum.StrEnum):
    """Where one signed transaction stands (see :mod:`cic_seeding.outbox`)."""

    SIGNED = "signed"  # recorded; not (yet) known to have reached the node
    SENT = "sent"  # the node took it (at least once)
    MINED = "mined"  # its receipt says success
    REVERTED = "reverted"  # its receipt says it reverted
    SUPERSEDED = "superseded"  # another signature of its family (a fee bump) was mined
    REPLACED = "replaced"  # its nonce was used by a transaction outside its family
    FAILED = "failed"  # the node refused its bytes; its nonce is free again

    @property
    def open(self) -> bool:
        """Still on its way: it may yet be mined."""
        return self in (TxStatus.SIGNED, TxStatus.SENT)


OPEN_TX = (TxStatus.SIGNED, TxStatus.SENT)


@dataclass(frozen=True, slots=True)  # one per user (or tx): no __dict__ each
class OutTx:
    """One signed transaction in the outbox."""

    tx_hash: str
    chain: str  # chain id and genesis hash prefix: two devnets with one id stay apart
    sender: str  # 0x lower-case
    nonce: int
    raw: str  # 0x-hex signed transaction
    purpose: str  # register, fund, faucet, gas, transfer ...
    owner: str  # what it is for: a user's address, a ledger key
    family: str  # hash of the first signature; a fee bump keeps it
    status: TxStatus = TxStatus.SIGNED
    sends: int = 0  # broadcasts so far, first and re-sends (over every run)
    block_number: int | None = None
    reason: str | None = None
    sent_at: float = 0.0  # wall-clock time of the last broadcast (0: never)
    created_at: float = 0.0


#: Payment kinds the syncer uses (the ledger accepts any short string).
FUND, FAUCET, GAS = "fund", "faucet", "gas"
#: Transaction kind of a registration (in :attr:`UserState.txs`).
REGISTER = "register"
#: A payment's ``raw_tx`` when the outbox holds its transaction's bytes (under its hash): a
#: BatchFunder transaction pays 100 rows, and its ~13 KB repeated in each was most of the
#: ledger's writes. An older ledger's rows hold the 0x-hex bytes themselves.
IN_OUTBOX = "outbox"


@dataclass(frozen=True, slots=True)  # one per user (or tx): no __dict__ each
class UserState:
    importer: str
    address: str
    index: int
    status: Status
    target: str | None
    reason: str | None
    attempts: int
    created_at: float
    updated_at: float
    txs: Mapping[str, str] = field(default_factory=dict)  # kind -> tx hash (or other reference)


@dataclass(frozen=True, slots=True)  # one per user (or tx): no __dict__ each
class Payment:
    importer: str
    address: str  # the recipient on the target chain
    kind: str
    status: Status
    amount: int
    tx_hash: str | None
    #: ``IN_OUTBOX`` (the outbox holds the signed transaction), the 0x-hex signed transaction
    #: (an older ledger), "" (the transaction is not ours: a registration paid it) or None
    raw_tx: str | None
    nonce: int | None
    block_number: int | None
    reason: str | None
    updated_at: float
    seq: int = 0  # position in the ledger (insertion order), for paging with ``after``


@dataclass(frozen=True)
class PaymentSummary:
    """Per-user progress of an importer's ledger, counted by the store (nothing loaded)."""

    planned: int  # users with at least one payment in the ledger
    done: int  # users all of whose payments are confirmed
    failed: int  # users with a failed payment


@dataclass(frozen=True)
class Cursor:
    """``next_block`` is the first block not processed yet (ranges are closed-start/open-end)."""

    importer: str
    chain: str
    next_block: int
    hashes: Mapping[int, str]  # recently processed block number -> block hash


def norm(address: str) -> str:
    """``address`` 0x lower-case, interned: the many maps of a run keyed by a user's address
    then share one string per user (~90 bytes each of them, at 100,000 users)."""
    return sys.intern(address.lower() if address.startswith("0x") else "0x" + address.lower())


class StateStore(abc.ABC):
    """Persistent import state. One instance per process; safe to share between threads."""

    #: How many recent block hashes the cursor keeps for reorg detection.
    KEEP_HASHES = 128

    # -- lifecycle ---------------------------------------------------------------------------
    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """Group calls into one atomic transaction (nested use joins the outer one)."""

    @abc.abstractmethod
    def exclusive(self, name: str) -> AbstractContextManager[None]:
        """Hold a named lock across processes for the block, or raise StateError if it is held.

        Used so that two syncers of one importer never work the same ledger at once.
        """

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the state lives, for messages (no secrets)."""

    # -- users -------------------------------------------------------------------------------
    @abc.abstractmethod
    def add_users(self, importer: str, users: Iterable[tuple[int, str]]) -> int:
        """Insert ``(index, address)`` rows as pending; existing users are left alone.

        Returns how many were new.
        """

    @abc.abstractmethod
    def user(self, importer: str, address: str) -> UserState | None: ...

    @abc.abstractmethod
    def users(self, importer: str, statuses: Iterable[Status] | None = None, *,
              txs: bool = True) -> list[UserState]:
        """Users in index order, optionally only those with one of ``statuses``; with
        ``txs=False`` without their transactions (``UserState.txs`` empty: the verifier holds
        every user at once and needs none of them)."""

    @abc.abstractmethod
    def addresses(self, importer: str, statuses: Iterable[Status] | None = None) -> set[str]:
        """The set of user addresses (fast; for resume by set difference)."""

    @abc.abstractmethod
    def counts(self, importer: str) -> dict[Status, int]: ...

    @abc.abstractmethod
    def mark_submitted(self, importer: str,
                       items: Iterable[tuple[str, str, str, str | None]]) -> None:
        """``(address, kind, tx_hash, target)``: a transaction for the user is on its way."""

    @abc.abstractmethod
    def mark_confirmed(self, importer: str, items: Iterable[tuple[str, str | None]]) -> None:
        """``(address, target)``: the user is done (target None keeps the known one)."""

    @abc.abstractmethod
    def mark_failed(self, importer: str, items: Iterable[tuple[str, str]]) -> None:
        """``(address, reason)``: this attempt failed; a rerun tries again."""

    @abc.abstractmethod
    def targets(self, importer: str) -> dict[str, str]:
        """Target-chain address -> user address, for users that have a target."""

    # -- cursor ------------------------------------------------------------------------------
    @abc.abstractmethod
    def cursor(self, importer: str, chain: str) -> Cursor | None: ...

    @abc.abstractmethod
    def init_cursor(self, importer: str, chain: str, next_block: int) -> Cursor:
        """Create the cursor at ``next_block`` unless one exists; return the one in force."""

    @abc.abstractmethod
    def advance_cursor(self, importer: str, chain: str, next_block: int,
                       hashes: Mapping[int, str]) -> None:
        """Move the cursor to ``next_block`` and remember ``hashes`` of the blocks covered.

        Call it inside :meth:`transaction` together with the effects the covered range caused.
        """

    @abc.abstractmethod
    def rewind_cursor(self, importer: str, chain: str, next_block: int) -> None:
        """Move the cursor back to ``next_block`` and forget hashes at or above it (reorg)."""

    # -- payments ledger ---------------------------------------------------------------------
    @abc.abstractmethod
    def plan_payments(self, importer: str, items: Iterable[tuple[str, str, int]]) -> int:
        """``(address, kind, amount)`` as pending unless already in the ledger; returns new rows."""

    @abc.abstractmethod
    def payment(self, importer: str, address: str, kind: str) -> Payment | None: ...

    @abc.abstractmethod
    def payments(self, importer: str, statuses: Iterable[Status] | None = None,
                 kind: str | None = None, limit: int | None = None,
                 after: int = 0) -> list[Payment]:
        """Ledger rows in insertion order, filtered by status and kind; ``after`` a
        :attr:`Payment.seq` starts past that row (paging that survives status changes)."""

    @abc.abstractmethod
    def payment_counts(self, importer: str) -> dict[tuple[str, Status], int]: ...

    @abc.abstractmethod
    def payment_summary(self, importer: str) -> PaymentSummary:
        """How many users the ledger has, has paid completely, and has failed."""

    @abc.abstractmethod
    def unplanned_targets(self, importer: str, limit: int | None = None) -> list[str]:
        """Target addresses of users with no payment in the ledger (in index order)."""

    @abc.abstractmethod
    def failed_unpaid(self, importer: str, limit: int = 10) -> tuple[int, list[UserState]]:
        """Users whose import failed and who have no payment in the ledger: how many, and the
        first ``limit`` of them (in index order, with the import's reason)."""

    @abc.abstractmethod
    def mark_payments_submitted(
            self, importer: str, items: Iterable[tuple[str, str, str, str, int]]) -> None:
        """``(address, kind, tx_hash, raw_tx, nonce)``: record *before* broadcasting."""

    @abc.abstractmethod
    def mark_payments_confirmed(self, importer: str,
                                items: Iterable[tuple[str, str, int]]) -> None:
        """``(address, kind, block_number)``: the receipt says it succeeded."""

    @abc.abstractmethod
    def mark_payments_failed(self, importer: str, items: Iterable[tuple[str, str, str]]) -> None:
        """``(address, kind, reason)``."""

    @abc.abstractmethod
    def reset_payments(self, importer: str, items: Iterable[tuple[str, str]]) -> None:
        """``(address, kind)`` back to pending, forgetting the transaction.

        Only for a transaction known never to be mined (unknown to the node and its nonce used
        by another transaction), or a failed payment to retry.
        """

    @abc.abstractmethod
    def reopen_payments(self, importer: str, from_block: int) -> int:
        """Confirmed payments mined at or above ``from_block`` go back to submitted (reorg)."""

    # -- outbox ------------------------------------------------------------------------------
    @abc.abstractmethod
    def record_txs(self, txs: Iterable[OutTx]) -> None:
        """Insert signed transactions (a hash already there is left alone: same bytes)."""

    @abc.abstractmethod
    def txs(self, chain: str, *, hashes: Iterable[str] | None = None,
            families: Iterable[str] | None = None, sender: str | None = None,
            statuses: Iterable[TxStatus] | None = None, purpose: str | None = None,
            owners: Iterable[str] | None = None, min_nonce: int | None = None,
            limit: int | None = None) -> list[OutTx]:
        """Outbox rows of ``chain`` matching every filter given, by sender and nonce (then
        age)."""

    @abc.abstractmethod
    def mark_txs(self, items: Iterable[tuple[str, TxStatus, int | None, str | None]]) -> None:
        """``(tx_hash, status, block_number, reason)``."""

    @abc.abstractmethod
    def mark_txs_sent(self, hashes: Iterable[str], at: float) -> None:
        """The node took these (again) at ``at``: status sent, one more send."""

    @abc.abstractmethod
    def tx_counts(self, chain: str) -> dict[tuple[str, TxStatus], int]:
        """``(purpose, status) -> n`` of the outbox of ``chain``."""
