"""Deploy and wire the CIC contracts onto a node with one signer (the deployer).

Registry with the standard identifiers, AccountsIndex (deployer is writer), token index,
a GiftableToken registered there and as DefaultToken, a faucet funded with tokens and a payout
amount, and the helper contracts BatchReader (fast reads for the verifier) and BatchFunder
(opt-in fast path; a writer of nothing unless ``DeployOptions.batch_funder_writer``: the
importer and syncer grant its rights on a devnet when ``--batch-funder`` is given).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from eth_utils import to_checksum_address

from cic_seeding.chain.abi import ContractAbi, artifact
from cic_seeding.chain.client import ChainClient
from cic_seeding.chain.registry import IDENTIFIERS, key32
from cic_seeding.chain.signer import SignedTx
from cic_seeding.chain.tx import Call, created_address
from cic_seeding.errors import TransactionError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeployOptions:
    token_symbol: str = "GFT"
    token_name: str = "Giftable Token"
    decimals: int = 6
    supply_units: int = 10**12  # whole tokens minted to the deployer
    faucet_amount_units: int = 5  # whole tokens per faucet payout (0: the faucet pays nothing)
    faucet_funds_units: int = 10**9  # whole tokens the faucet holds to pay out
    batch_funder_writer: bool = False  # make BatchFunder a writer of AccountsIndex and faucet


@dataclass
class Deployment:
    registry: str = ""
    contracts: dict[str, str] = field(default_factory=dict)
    token: dict[str, Any] = field(default_factory=dict)
    faucet_amount: int = 0  # smallest unit
    deployer: str = ""
    block: int = 0  # head after deployment: importers never need to scan below it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Deployer:
    """Signs the deployment's transactions with consecutive nonces and sends each at once,
    without waiting for the one before; a created contract's address is known from its
    nonce. :meth:`finish` waits for them all, so a node that mines by itself takes the whole
    deployment in a block or two rather than a block per transaction (20 transactions: ~20 s
    on ``anvil --block-time 1``, minutes on a network of 5 s blocks). Sent one request each,
    in nonce order: a node that mines as it receives (Hardhat) takes a batch out of order."""

    def __init__(self, client: ChainClient, first_nonce: int) -> None:
        self.client = client
        assert client.signer is not None
        self.sender = client.signer.address
        self.nonce = first_nonce
        self.sent: list[tuple[str, SignedTx, Call, str | None]] = []

    def create(self, name: str, *args: Any, gas: int = 3_000_000) -> str:
        address = str(to_checksum_address(created_address(self.sender, self.nonce)))
        self._send(Call(None, artifact(name).deploy_data(*args), gas=gas), f"deploying {name}",
                   creates=address)
        return address

    def send(self, to: str, abi: ContractAbi, fn: str, *args: Any, gas: int = 300_000) -> None:
        self._send(Call(to, abi.encode(fn, *args), gas=gas), f"{abi.name}.{fn}")

    def _send(self, call: Call, what: str, creates: str | None = None) -> None:
        signed = self.client.sign(call, self.nonce)
        (error,) = self.client.broadcast([signed.raw], mine=False)
        if error is not None:
            raise TransactionError(f"{what}: the node refused the transaction: {error}")
        self.nonce += 1
        self.sent.append((what, signed, call, creates))

    def finish(self, timeout: float = 120.0) -> None:
        """Wait for every transaction sent; TransactionError naming the first that reverted
        (or created its contract elsewhere than its nonce said)."""
        receipts = self.client.wait([signed.tx_hash for _, signed, _, _ in self.sent], timeout)
        for what, signed, call, creates in self.sent:
            receipt = receipts[signed.tx_hash]
            if not receipt.ok:
                raise TransactionError(f"{what}: transaction {signed.tx_hash} reverted"
                                       f"{self.client.revert_reason(call)}")
            if creates and (receipt.contract_address or "").lower() != creates.lower():
                raise TransactionError(f"{what}: the contract is at {receipt.contract_address},"
                                       f" not at {creates} as its nonce said")
            if creates:
                log.info("deployed %s at %s", what.removeprefix("deploying "), creates)


def deploy_cic(client: ChainClient, options: DeployOptions | None = None) -> Deployment:
    """Deploy everything with ``client``'s signer; returns the addresses."""
    options = options or DeployOptions()
    with client.allocator.hold():
        d = _Deployer(client, client.pending_nonce())
        deployment = _deploy(d, options)
        d.finish()
    deployment.block = client.head()
    assert client.call(deployment.contracts["AccountsIndex"], artifact("AccountsIndex").fn(
        "isWriter"), d.sender)
    return deployment


def _deploy(d: _Deployer, options: DeployOptions) -> Deployment:
    """Send every transaction of the deployment (``d.finish`` waits for them)."""
    deployer = d.sender
    unit = 10**options.decimals
    registry_abi, index_abi = artifact("Registry"), artifact("AccountsIndex")
    tokens_abi, token_abi = artifact("TokenUniqueSymbolIndex"), artifact("GiftableToken")
    faucet_abi, store_abi = artifact("ERC20Faucet"), artifact("FaucetStore")

    registry = d.create("Registry", [key32(n) for n in IDENTIFIERS])
    index = d.create("AccountsIndex")
    token_index = d.create("TokenUniqueSymbolIndex")
    token = d.create("GiftableToken", options.token_name, options.token_symbol,
                     options.decimals, 0)
    store = d.create("FaucetStore")
    faucet = d.create("ERC20Faucet", token, store, index)
    reader = d.create("BatchReader")
    funder = d.create("BatchFunder")

    d.send(store, store_abi, "addWriter", faucet)
    d.send(token_index, tokens_abi, "register", token)
    for name, address in (("ContractRegistry", registry), ("AccountRegistry", index),
                          ("TokenRegistry", token_index), ("Faucet", faucet),
                          ("DefaultToken", token)):
        d.send(registry, registry_abi, "set", key32(name), address)
    d.send(token, token_abi, "mintTo", deployer, options.supply_units * unit)
    if options.faucet_funds_units:
        d.send(token, token_abi, "mintTo", faucet, options.faucet_funds_units * unit)
    amount = options.faucet_amount_units * unit
    d.send(faucet, faucet_abi, "setAmount", amount)
    if options.batch_funder_writer:
        d.send(index, index_abi, "addWriter", funder)
        d.send(faucet, faucet_abi, "addWriter", funder)
    return Deployment(
        registry=registry,
        contracts={"Registry": registry, "AccountsIndex": index,
                   "TokenUniqueSymbolIndex": token_index, "GiftableToken": token,
                   "FaucetStore": store, "ERC20Faucet": faucet, "BatchReader": reader,
                   "BatchFunder": funder},
        token={"address": token, "symbol": options.token_symbol, "decimals": options.decimals,
               "name": options.token_name},
        faucet_amount=amount, deployer=deployer)
