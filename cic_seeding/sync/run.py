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
from contextlib import ExitStack
from dataclasses import replace

from cic_seeding.chain.connect import checked_chain, connect
from cic_seeding.chain.registry import CicNetwork
from cic_seeding.config import Settings
from cic_seeding.datadir import CheckedRows, DataDir, dataset_settings
from cic_seeding.errors import ImporterError
from cic_seeding.importers.registry import get_importer
from cic_seeding.outbox import outbox_for
from cic_seeding.state import FUND, StateStore, norm, open_state_store
from cic_seeding.sync.chain import RegistryChain
from cic_seeding.sync.custodial import custodial_payments
from cic_seeding.sync.funding import SyncPayments, SyncSetup, funding, sovereign_payments
from cic_seeding.sync.syncer import Syncer, SyncOptions, SyncResult

log = logging.getLogger(__name__)

#: The payment schemes an importer may name (``Importer.payment_scheme``).
SCHEMES: dict[str, SyncPayments] = {"sovereign": sovereign_payments,
                                    "custodial": custodial_payments}


def payments_of(importer: str, scheme: str) -> SyncPayments:
    """The payment scheme ``scheme`` that importer ``importer`` names; ImporterError if unknown."""
    if scheme not in SCHEMES:
        raise ImporterError(f"importer {importer!r} names the payment scheme {scheme!r}, which "
                            "the syncer does not know",
                            hint=f"payment schemes: {', '.join(sorted(SCHEMES))}")
    return SCHEMES[scheme]


def run_sync(settings: Settings, importer: str = "eth", options: SyncOptions | None = None,
             *, network: CicNetwork | None = None, store: StateStore | None = None,
             mint: bool = False, stop: threading.Event | None = None) -> SyncResult:
    """Pay every registered user of ``importer`` in the data directory exactly once."""
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
        chain = RegistryChain(network, str(spec), token=fund.token.address, mint=fund.mint)
        outbox = outbox_for(settings, network.client, store)
        setup = SyncSetup(settings, importer, network, store, chain, data, users, balances,
                          fund, resources, outbox)
        options = options or SyncOptions()
        if options.batch_size is None:
            options = replace(options, batch_size=settings.batch_size)
        payer, plan, options = payments_of(importer, cls.payment_scheme())(setup, options)
        try:
            result = Syncer(importer, chain, store, payer, plan, users, options, stop,
                            prepaid=chain.prepaid).run()
        finally:
            log.info("sync %s: %s", importer, outbox.counts.line())
        result.transactions = outbox.counts.to_dict()
        if quarantined:
            log.error("%d users have no usable row in %s; nothing was paid to them",
                      len(quarantined), data.balances_csv)
            result.users += len(quarantined)
            result.failed += len(quarantined)
            result.failures = [(t, FUND, why) for t, why in quarantined.items()] \
                + result.failures
        return result


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
