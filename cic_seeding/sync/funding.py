"""How the syncer pays: the token and faucet (:class:`Funding`), what one run has resolved
(:class:`SyncSetup`), and the payment scheme of sovereign users (:func:`sovereign_payments`):
opening balance, faucet payout and gas gift, all from the main signer.

With ``batch_funder`` set (opt-in), faucet payouts go out as ``BatchFunder.giveMany`` and gas
gifts as ``BatchFunder.giveValue``, many users per transaction; opening balances stay one
transfer each (those the BatchFunder paid at registration are read from the chain, never paid).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace

from cic_seeding.chain import funder as batch
from cic_seeding.chain.registry import FAUCET, TOKEN, CicNetwork, Token
from cic_seeding.chain.signer import Signer
from cic_seeding.chain.tx import Call
from cic_seeding.config import Settings
from cic_seeding.datadir import DataDir
from cic_seeding.errors import SignerError
from cic_seeding.outbox import Outbox, TxArchive
from cic_seeding.state import FAUCET as FAUCET_KIND
from cic_seeding.state import FUND, GAS, Payment, StateStore
from cic_seeding.sync.chain import RegistryChain
from cic_seeding.sync.payer import Payer
from cic_seeding.sync.syncer import PaymentPlan, SyncOptions
from cic_seeding.units import dataset_to_token

log = logging.getLogger(__name__)

TRANSFER_GAS, MINT_GAS, GIVE_GAS, VALUE_GAS = 90_000, 120_000, 200_000, 21_000


@dataclass(frozen=True)
class Funding:
    """What the syncer pays with: the token, the faucet and whether it mints."""

    token: Token
    faucet: str
    faucet_amount: int  # smallest unit; 0 when the faucet pays nothing (or another token)
    mint: bool = False

    def give(self, address: str, amount: int) -> Call:
        """``amount`` tokens to ``address`` (a transfer from the signer, or minted)."""
        fn = "mintTo" if self.mint else "transfer"
        return Call(self.token.address, TOKEN.encode(fn, address, amount),
                    gas=MINT_GAS if self.mint else TRANSFER_GAS)

    def build(self, payment: Payment) -> Call:
        if payment.kind == FUND:
            return self.give(payment.address, payment.amount)
        if payment.kind == FAUCET_KIND:
            return Call(self.faucet, FAUCET.encode("giveTo", payment.address), gas=GIVE_GAS)
        if payment.kind == GAS:
            return Call(payment.address, b"", value=payment.amount, gas=VALUE_GAS)
        raise ValueError(f"unknown payment kind {payment.kind!r}")


@dataclass(frozen=True)
class BatchFunding:
    """Faucet payouts and gas gifts through a BatchFunder, many per transaction."""

    fund: Funding
    batcher: batch.Batcher

    def groups(self, payments: Sequence[Payment]) -> list[tuple[Call, list[Payment]]]:
        out: list[tuple[Call, list[Payment]]] = []
        by_kind: dict[str, list[Payment]] = {}
        for p in payments:
            if p.kind in (FAUCET_KIND, GAS):
                by_kind.setdefault(p.kind, []).append(p)
            else:
                out.append((self.fund.build(p), [p]))
        for kind, todo in by_kind.items():
            for i in range(0, len(todo), batch.CHUNK):
                chunk = todo[i:i + batch.CHUNK]
                call = (self.batcher.give_many(self.fund.faucet, [p.address for p in chunk])
                        if kind == FAUCET_KIND else
                        self.batcher.give_value([(p.address, p.amount) for p in chunk]))
                out.append((call, chunk))
        return out


def funding(network: CicNetwork, symbol: str | None, mint: bool = False) -> Funding:
    """The token (by symbol, default DefaultToken) and the faucet's payout in that token."""
    token = network.token(symbol)
    return Funding(token, network.faucet, network.faucet_payout(token), mint)


class OpeningBalances(Mapping[str, int]):
    """Target address -> opening balance in the token's smallest unit, scaled on reading
    (a view of the users and their dataset balances: no second copy of 100,000 entries)."""

    def __init__(self, users: Mapping[str, str], balances: Mapping[str, int],
                 decimals: int, token_decimals: int) -> None:
        self.users, self.balances = users, balances
        self.decimals, self.token_decimals = decimals, token_decimals

    def __getitem__(self, target: str) -> int:
        return dataset_to_token(self.balances[self.users[target]], self.decimals,
                                self.token_decimals)

    def __iter__(self) -> Iterator[str]:
        return iter(self.users)

    def __len__(self) -> int:
        return len(self.users)


def opening_balances(setup: SyncSetup) -> Mapping[str, int]:
    """Target address -> opening balance in the token's smallest unit."""
    return OpeningBalances(setup.users, setup.balances, setup.data.manifest().decimals,
                           setup.fund.token.decimals)


def sovereign_plan(setup: SyncSetup) -> PaymentPlan:
    """Opening balance, faucet payout and gas gift (``gas_gift``) for each user."""
    return PaymentPlan(opening_balances(setup), setup.fund.faucet_amount,
                       setup.settings.gas_gift)


@dataclass(frozen=True)
class SyncSetup:
    """What :func:`run_sync` has resolved for one importer's run; an importer's
    payment scheme builds its payer and plan from it."""

    settings: Settings
    importer: str
    network: CicNetwork
    store: StateStore
    chain: RegistryChain
    data: DataDir
    users: dict[str, str]  # target address -> data directory address (0x lower)
    balances: Mapping[str, int]  # data directory address (0x lower) -> amount, dataset units
    fund: Funding
    resources: ExitStack  # closed when the run ends (e.g. a client the payer holds)
    outbox: Outbox  # every transaction of the run's signer goes through it
    archive: TxArchive  # the data directory's tx/, for transactions another signer made

    @property
    def signer(self) -> Signer:
        signer = self.network.client.signer
        if signer is None:
            raise SignerError("the syncer needs a signing key",
                              hint="give --devnet DIR or -y KEYFILE with its password")
        return signer


#: ``(setup, options) -> (payer, plan, options)``: a payment scheme (``sync.run.SCHEMES``).
SyncPayments = Callable[[SyncSetup, SyncOptions], tuple[Payer, PaymentPlan, SyncOptions]]


def sovereign_payments(setup: SyncSetup, options: SyncOptions
                       ) -> tuple[Payer, PaymentPlan, SyncOptions]:
    """Everything from the main signer: opening balance, faucet payout, gas gift (the
    BatchFunder groups the last two when ``batch_funder`` is set)."""
    settings, network, fund = setup.settings, setup.network, setup.fund
    plan = sovereign_plan(setup)
    funder = batch.resolve(settings)
    groups = None
    if funder is not None:
        writer_of = [("faucet", fund.faucet)] if fund.faucet_amount else []
        batch.grant(network, funder, writer_of, devnet=settings.devnet_deployer_signs)
        groups = BatchFunding(fund, batch.Batcher(funder)).groups
        options = replace(options, batch_size=max(options.batch_size or 0, batch.ROUND))
    payer = Payer(setup.store, setup.importer, setup.chain, setup.outbox, setup.signer,
                  fund.build, groups)
    return payer, plan, options
