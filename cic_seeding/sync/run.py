"""Wiring the syncer for one importer's users on a CIC network: ``cic-seed sync NAME``.

The importer class names how its users are paid (:meth:`Importer.payment_scheme
<cic_seeding.importers.base.Importer.payment_scheme>`): ``sovereign`` (the default: opening
balance, faucet payout and gas gift from the main signer, :mod:`cic_seeding.sync.funding`) or
``custodial`` (the opening balance only, as a transfer the custodial engine signs,
:mod:`cic_seeding.sync.custodial`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from cic_seeding.chain.connect import checked_chain, connect
from cic_seeding.chain.funder import CHUNK
from cic_seeding.chain.registry import CicNetwork
from cic_seeding.config import DEFAULT_BATCH_SIZE, Settings
from cic_seeding.datadir import CheckedRows, DataDir, dataset_settings
from cic_seeding.errors import ImporterError
from cic_seeding.importers.base import ImportResult
from cic_seeding.importers.registry import get_importer
from cic_seeding.outbox import TxArchive, outbox_for
from cic_seeding.outbox.node import TRACED_BLOCK
from cic_seeding.state import (
    FAUCET,
    FUND,
    GAS,
    REGISTER,
    Payment,
    StateStore,
    Status,
    norm,
    open_state_store,
)
from cic_seeding.sync.chain import RegistryChain
from cic_seeding.sync.custodial import custodial_payments, custodial_plan
from cic_seeding.sync.funding import (
    SyncPayments,
    SyncSetup,
    funding,
    sovereign_payments,
    sovereign_plan,
)
from cic_seeding.sync.payer import Payer
from cic_seeding.sync.syncer import PaymentPlan, Progress, Syncer, SyncOptions, SyncResult

log = logging.getLogger(__name__)

#: The payment schemes an importer may name (``Importer.payment_scheme``).
SCHEMES: dict[str, SyncPayments] = {"sovereign": sovereign_payments,
                                    "custodial": custodial_payments}
#: What each scheme pays a user (the plan its payments function makes, without its side
#: effects: a dry run grants no rights and asks no engine).
PLANS: dict[str, Callable[[SyncSetup], PaymentPlan]] = {"sovereign": sovereign_plan,
                                                         "custodial": custodial_plan}


def payments_of(importer: str, scheme: str) -> SyncPayments:
    """The payment scheme ``scheme`` that importer ``importer`` names; ImporterError if unknown."""
    if scheme not in SCHEMES:
        raise ImporterError(f"importer {importer!r} names the payment scheme {scheme!r}, which "
                            "the syncer does not know",
                            hint=f"payment schemes: {', '.join(sorted(SCHEMES))}")
    return SCHEMES[scheme]


@dataclass
class Prepared:
    """What a sync run and its dry run share: the setup and the users left out for their
    balances.csv rows (``{target: why}``)."""

    setup: SyncSetup
    quarantined: dict[str, str]


@contextmanager
def prepared(settings: Settings, importer: str, *, network: CicNetwork | None = None,
             store: StateStore | None = None, mint: bool = False) -> Iterator[Prepared]:
    """Connect, read the data directory and open the state store for paying ``importer``'s
    users (nothing is sent); everything opened is closed on leaving."""
    cls = get_importer(importer)
    settings = dataset_settings(settings)
    network = network or connect(settings)
    spec = checked_chain(network, settings)  # another chain would never show a registration
    data = DataDir(settings.data_dir)
    with ExitStack() as resources:
        if store is None:
            store = resources.enter_context(open_state_store(settings))
        users = cls.sync_users(data, store)
        read = data.read_balances()  # read once, row by row: a bad row quarantines one user
        balances = {norm(k): v for k, v in read.values.items()}
        quarantined = _quarantine(users, read, data)
        fund = funding(network, settings.token_symbol, mint)
        outbox = outbox_for(settings, network.client, store)
        chain = RegistryChain(network, str(spec), token=fund.token.address, mint=fund.mint,
                              plain=_our_registrations(store, outbox.chain))
        yield Prepared(SyncSetup(settings, importer, network, store, chain, data, users,
                                 balances, fund, resources, outbox,
                                 TxArchive(data.tx, network.client.rpc)), quarantined)


#: Payments signed per batch on a node that mines when asked, unless ``batch_size`` is set:
#: the outbox signs the next chunk while the node takes the last one and mines every
#: ``node.block_size``, so one batch of many keeps the node busy where batches of 250 left it
#: idle between them (10,000 users' payments: ~15 % faster); a block's worth, so that settling
#: each batch (:meth:`Syncer._pay`) costs one block. A node that mines by itself gets
#: ``batch_size`` (the outbox holds at most ``tx_max_unmined`` in its pool).
PAY_BATCH = TRACED_BLOCK


def pay_batch(options: SyncOptions, setup: SyncSetup) -> int:
    """Payments per signed batch: ``options.batch_size``, else the settings'; the default
    setting on a node that mines when asked: :data:`PAY_BATCH`."""
    size = options.batch_size if options.batch_size is not None else setup.settings.batch_size
    if size == DEFAULT_BATCH_SIZE and setup.network.client.explicit_mining:
        return max(size, PAY_BATCH)
    return size


def run_sync(settings: Settings, importer: str = "eth", options: SyncOptions | None = None,
             *, network: CicNetwork | None = None, store: StateStore | None = None,
             mint: bool = False, stop: threading.Event | None = None,
             recheck: Collection[str] = (), progress: Progress | None = None) -> SyncResult:
    """Pay every registered user of ``importer`` in the data directory exactly once.

    ``recheck``: target addresses whose confirmed payments are checked against the chain's
    logs first; a payment the chain does not show (a chain rolled back, a repair) is paid
    again, one the chain shows never. ``progress(done, users)``: users paid completely, when
    the run begins and after every round (users without a usable balances.csv row count in
    ``users``, never in ``done``)."""
    started = time.monotonic()
    cls = get_importer(importer)
    with prepared(settings, importer, network=network, store=store, mint=mint) as ready:
        setup, quarantined = ready.setup, ready.quarantined
        options = options or SyncOptions()
        options = replace(options, batch_size=pay_batch(options, setup))
        payer, plan, options = payments_of(importer, cls.payment_scheme())(setup, options)
        if recheck:
            _reopen_unpaid(setup.store, importer, payer,
                           [norm(t) for t in recheck if norm(t) in setup.users])
        report = None if progress is None else _counting_too(progress, len(quarantined))
        try:
            result = Syncer(importer, setup.chain, setup.store, payer, plan, setup.users,
                            options, stop, prepaid=setup.chain.prepaid,
                            archive=setup.archive, progress=report).run()
        finally:
            log.info("sync %s: %s", importer, setup.outbox.counts.line())
        result.transactions = setup.outbox.counts.to_dict()
        result.seconds = time.monotonic() - started  # the whole run, set-up too (as progress)
        if quarantined:
            log.error("%d users have no usable row in %s; nothing was paid to them",
                      len(quarantined), setup.data.balances_csv)
            result.users += len(quarantined)
            result.failed += len(quarantined)
            result.failures = [(t, FUND, why) for t, why in quarantined.items()] \
                + result.failures
        return result


def _our_registrations(store: StateStore, chain: str) -> Callable[[Sequence[str]], set[str]]:
    """Which of some transaction hashes the outbox signed as single ``AccountsIndex.add``
    registrations (the eth importer's per-transaction path): they paid no opening balance."""
    def plain(hashes: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(hashes), 500):
            found.update(t.tx_hash for t in store.txs(chain, hashes=hashes[i:i + 500])
                         if t.purpose == REGISTER)
        return found

    return plain


def _counting_too(progress: Progress, left_out: int) -> Progress:
    """``progress`` over ``left_out`` more users, never done (quarantined)."""
    return lambda done, users: progress(done, users + left_out)


def _reopen_unpaid(store: StateStore, importer: str, payer: Payer, targets: Sequence[str]
                   ) -> int:
    """Confirmed payments to ``targets`` that the chain does not show go back to pending.

    An opening balance paid by its registration (no transaction of ours: the BatchFunder
    path) is left alone: its user is registered again, with it, by the importer."""
    by_kind: dict[str, list[str]] = {}
    for target in targets:
        for kind in (FUND, FAUCET, GAS):
            p = store.payment(importer, target, kind)
            if p is not None and p.status == Status.CONFIRMED and p.raw_tx:
                by_kind.setdefault(kind, []).append(target)
    reopened = []
    for kind, addresses in by_kind.items():
        shown = payer.paid_on_chain(kind, addresses)
        reopened += [(a, kind) for a in addresses if a not in shown]
    if reopened:
        log.warning("sync %s: %d confirmed payments are not on the chain; paying them again",
                    importer, len(reopened))
        store.reset_payments(importer, reopened)
    return len(reopened)


@dataclass
class SyncPlan:
    """What a sync run would pay (``cic-seed sync --dry-run``): nothing is sent."""

    importer: str
    users: int = 0  # users of the importer the data directory has
    done: int = 0  # paid completely
    to_pay: int = 0  # users with a payment still to make
    payments: dict[str, int] = field(default_factory=dict)  # kind -> payments to make
    transactions: int = 0
    tokens: int = 0  # opening balances and faucet payouts, the token's smallest unit
    gas_wei: int = 0
    token_symbol: str = ""
    token_decimals: int = 18
    quarantined: dict[str, str] = field(default_factory=dict)
    unregistered: int = 0  # of ``to_pay``: not imported yet (paid once registered)

    def render_text(self) -> str:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.payments.items())) or "none"
        tokens = self.tokens / 10 ** self.token_decimals
        most = "at most " if self.unregistered else ""
        lines = [f"sync {self.importer} (dry run, nothing sent): {self.done} of {self.users} "
                 f"users paid; would pay {most}{self.to_pay} users: {kinds}",
                 f"  {most}{self.transactions} transactions, {tokens:,} {self.token_symbol}, "
                 f"{self.gas_wei / 10**18:g} native coin of gas gifts"]
        if self.unregistered:
            lines.append(f"  ({self.unregistered} of them are not imported yet: each is paid "
                         "once the chain shows its registration)")
        lines += [f"  quarantined {t}: {why}" for t, why in list(self.quarantined.items())[:10]]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_sync(settings: Settings, importer: str = "eth", *, mint: bool = False) -> SyncPlan:
    """What :func:`run_sync` would pay now (reads the chain and the state store; sends
    nothing)."""
    cls = get_importer(importer)
    with prepared(settings, importer, mint=mint) as ready:
        setup = ready.setup
        plan = PLANS[cls.payment_scheme()](setup)
        recorded: dict[tuple[str, str], Payment] = {}
        after = 0
        while page := setup.store.payments(importer, limit=5000, after=after):
            recorded.update(((p.address, p.kind), p) for p in page)
            after = page[-1].seq
        out = SyncPlan(importer, users=len(setup.users) + len(ready.quarantined),
                       token_symbol=setup.fund.token.symbol,
                       token_decimals=setup.fund.token.decimals,
                       quarantined=ready.quarantined)
        imported = set(setup.store.addresses(importer, [Status.CONFIRMED]))
        for target in setup.users:
            owed = [(kind, amount) for _, kind, amount in plan.for_user(target)
                    if (p := recorded.get((target, kind))) is None
                    or p.status != Status.CONFIRMED]
            if not owed:
                out.done += 1
                continue
            out.to_pay += 1
            out.unregistered += setup.users[target] not in imported
            for kind, amount in owed:
                out.payments[kind] = out.payments.get(kind, 0) + 1
                if kind == GAS:
                    out.gas_wei += amount
                else:
                    out.tokens += amount
        batched = setup.settings.batch_funder and cls.payment_scheme() == "sovereign"
        out.transactions = (out.payments.get(FUND, 0)
                            + sum(-(-out.payments.get(k, 0) // CHUNK) for k in (FAUCET, GAS))
                            if batched else sum(out.payments.values()))
        return out


def _quarantine(users: dict[str, str], read: CheckedRows[int], data: DataDir
                ) -> dict[str, str]:
    """Take the users without a usable balances.csv row out of ``users`` (target ->
    data-directory address); returns ``{target: why}`` for them, in target order. They are paid
    nothing and reported failed; a rerun after the fix pays them."""
    out = {}
    for target in sorted(users):
        address = users[target]
        problem = read.problem(address)
        if problem is not None:
            out[target] = (f"opening balance of {address} cannot be read: {problem}; fix the "
                           "row (or regenerate), then rerun")
        elif read.get(address) is None:
            out[target] = (f"no opening balance for {target} in {data.balances_csv}; add its "
                           "row (or regenerate), then rerun")
    for target in out:
        del users[target]
    return out


def import_and_sync(settings: Settings, importer: str = "eth",
                    options: SyncOptions | None = None, *, limit: int | None = None,
                    stop: threading.Event | None = None,
                    progress: Callable[[int], None] | None = None
                    ) -> tuple[ImportResult, SyncResult]:
    """Import ``importer``'s users and pay them in one run: the syncer follows the chain on a
    thread of this process while the importer registers, so a batch's payments go out while
    the next batch is registered, instead of after the whole import. It ends when the import
    has ended and every user it registered is paid (a user the import could not register is
    left waiting, as a separate sync would leave it). Each side keeps its own exactly-once
    discipline: the two share only the signer's nonce lock and the state store."""
    cls = get_importer(importer)
    registered = threading.Event()
    stop = stop or threading.Event()
    options = replace(options or SyncOptions(poll=0.05), until=registered.is_set)
    synced: list[SyncResult] = []
    failed: list[BaseException] = []

    def follow() -> None:
        try:
            synced.append(run_sync(settings, importer, options, stop=stop))
        except BaseException as exc:  # handed to the caller's thread below
            failed.append(exc)
            stop.set()

    worker = cls(settings, stop=stop, progress=progress)
    thread = threading.Thread(target=follow, name=f"sync-{importer}", daemon=True)
    thread.start()
    try:
        imported = worker.run(limit=limit)
    finally:
        registered.set()
        worker.close()
        thread.join()
    if failed:
        raise failed[0]
    return imported, synced[0]
