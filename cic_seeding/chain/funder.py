"""The opt-in batch path: a BatchFunder contract that registers, funds and pays many users per
transaction (setting ``batch_funder`` / ``--batch-funder``).

The BatchFunder acts with rights given elsewhere: it must be a writer of the AccountsIndex
(registrations) and of the faucet (payouts), and the signer must be one of its writers and
allow it to move the opening balances (``approve``). When the signer is a devnet's deployer
(``--devnet DIR`` without another keyfile: it owns everything) :func:`grant` gives those
rights; elsewhere it only checks them and says what the contracts' owner has to do.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from eth_abi import decode

from cic_seeding.chain.abi import artifact
from cic_seeding.chain.registry import ACCOUNTS_INDEX, TOKEN, CicNetwork, checksum
from cic_seeding.chain.tx import Call
from cic_seeding.config import BATCH_FUNDER_DEVNET, Settings
from cic_seeding.errors import ConfigError, ContractError

log = logging.getLogger(__name__)

BATCH_FUNDER = artifact("BatchFunder")
#: Accounts per BatchFunder transaction: well inside a 30M block gas limit.
CHUNK = 100
#: Gas per account (measured on anvil: ~76k register+fund, ~44k faucet payout, ~36k value to a
#: new account) with headroom, plus a base per transaction. A node packs blocks by gas *limit*,
#: so generous limits would leave blocks half empty.
REGISTER_GAS, GIVE_GAS, VALUE_GAS, BASE_GAS = 100_000, 65_000, 45_000, 60_000
#: Payments the syncer sends per round, and users the importer registers per batch, on the
#: batch path: each is one block on a devnet, and a devnet's block costs time in proportion to
#: the whole state (anvil hashes it all again: ~0.6 s per block at 100,000 users, measured),
#: so few, full blocks: 100 transactions of CHUNK accounts, ~0.6-0.8G gas used of the
#: devnet's 3G limit (under its EIP-1559 target, half the limit, so the base fee only falls).
#: A node that mines by itself spreads them over its blocks.
ROUND = 100 * CHUNK
IMPORT_BATCH = 100 * CHUNK

_REGISTER_FNS = {BATCH_FUNDER.fn(n).selector: BATCH_FUNDER.fn(n)
                 for n in ("registerAndFund", "registerAndMint")}


def resolve(settings: Settings) -> str | None:
    """The BatchFunder address the settings opt into, or None (the per-transaction path).

    The settings loader has turned ``devnet`` into the devnet's address when there is a devnet;
    still ``devnet`` here means there is none."""
    value = (settings.batch_funder or "").strip()
    if not value:
        return None
    if value.lower() == BATCH_FUNDER_DEVNET:
        raise ConfigError("batch_funder 'devnet' needs a devnet",
                          hint="give --devnet DIR, or the BatchFunder's address "
                          "(--batch-funder 0x... / CIC_BATCH_FUNDER)")
    return checksum(value, "batch_funder")


def grant(network: CicNetwork, funder: str, writer_of: Sequence[tuple[str, str]], *,
          devnet: bool) -> None:
    """Make sure ``funder`` is a writer of each ``(what, contract)`` and the signer a writer of
    ``funder``. With ``devnet`` (the signer is the devnet's deployer, owner of every contract:
    ``Settings.devnet_deployer_signs``) the signer grants what is missing; otherwise a missing
    right is a ConfigError naming the call the owner has to make."""
    client = network.client
    assert client.signer is not None
    signer = client.signer.address
    if not client.code(funder):
        raise ContractError(f"no contract at batch_funder {funder}",
                            hint="deploy contracts/BatchFunder.sol, or drop --batch-funder")
    needs = [(what, contract, funder) for what, contract in writer_of]
    needs.append(("BatchFunder", funder, signer))
    for what, contract, who in needs:
        if network.is_writer(contract, who):
            continue
        if not devnet:
            raise ConfigError(f"{who} is not a writer of the {what} at {contract}; the batch "
                              "path needs it",
                              hint=f"its owner must call addWriter({who}) on {contract}, or "
                              "drop --batch-funder")
        log.info("devnet: making %s a writer of the %s at %s", who, what, contract)
        client.transact(Call(contract, ACCOUNTS_INDEX.encode("addWriter", who), gas=100_000),
                        f"{what}.addWriter({who})")


def ensure_allowance(network: CicNetwork, token: str, funder: str, needed: int) -> None:
    """The signer allows ``funder`` to move at least ``needed`` of its tokens (approve)."""
    client = network.client
    assert client.signer is not None
    owner = client.signer.address
    allowed = client.call(token, TOKEN.fn("allowance"), owner, funder)
    if allowed >= needed:
        return
    log.info("approving %d token units for the BatchFunder %s", needed, funder)
    client.transact(Call(token, TOKEN.encode("approve", funder, needed), gas=100_000),
                    f"approve({funder}, {needed})")


def chunks(items: Sequence[tuple[str, int]]) -> list[list[tuple[str, int]]]:
    return [list(items[i:i + CHUNK]) for i in range(0, len(items), CHUNK)]


@dataclass(frozen=True)
class Batcher:
    """Builds the BatchFunder transactions of one network."""

    funder: str

    def register_and_fund(self, index: str, token: str, items: Sequence[tuple[str, int]]
                          ) -> Call:
        accounts, amounts = [a for a, _ in items], [n for _, n in items]
        return Call(self.funder, BATCH_FUNDER.encode("registerAndFund", index, token, accounts,
                                                     amounts),
                    gas=BASE_GAS + REGISTER_GAS * len(items))

    def give_many(self, faucet: str, accounts: Sequence[str]) -> Call:
        return Call(self.funder, BATCH_FUNDER.encode("giveMany", faucet, list(accounts)),
                    gas=BASE_GAS + GIVE_GAS * len(accounts))

    def give_value(self, items: Sequence[tuple[str, int]]) -> Call:
        accounts, amounts = [a for a, _ in items], [n for _, n in items]
        return Call(self.funder, BATCH_FUNDER.encode("giveValue", accounts, amounts),
                    value=sum(amounts), gas=BASE_GAS + VALUE_GAS * len(items))


def funded_in(tx_input: str, index: str) -> Mapping[str, int] | None:
    """``{account (0x lower): amount}`` a transaction funded as it registered the accounts in
    ``index`` -- a BatchFunder ``registerAndFund``/``registerAndMint`` call -- else None.

    Registration and funding happen in one transaction there (the account is skipped entirely
    when already registered), so an ``AddressAdded`` that such a transaction emitted proves the
    amount was paid with it."""
    data = bytes.fromhex(tx_input.removeprefix("0x"))
    fn = _REGISTER_FNS.get(data[:4])
    if fn is None:
        return None
    try:
        target, _token, accounts, amounts = decode(list(fn.inputs), data[4:])
    except Exception:  # not our encoding after all (eth-abi raises several types)
        return None
    if str(target).lower() != index.lower():
        return None
    return {str(a).lower(): int(n) for a, n in zip(accounts, amounts, strict=False)}
