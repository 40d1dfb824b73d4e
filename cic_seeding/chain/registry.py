"""A CIC network resolved from one registry address.

Every contract is looked up in the Registry by its identifier (UTF-8, zero-padded to 32
bytes); tokens by symbol in the TokenRegistry. A zero answer is a
:class:`RegistryLookupError` that names what was looked up and what the registry does hold.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from functools import cached_property

from eth_utils import is_address, is_checksum_address, to_checksum_address

from cic_seeding.chain.abi import artifact
from cic_seeding.chain.client import ChainClient
from cic_seeding.errors import ConfigError, ContractError, RegistryLookupError, UsageError
from cic_seeding.records.chainspec import ChainSpec

log = logging.getLogger(__name__)

ZERO = "0x" + "00" * 20

#: The identifiers a CIC registry declares.
IDENTIFIERS = ("ContractRegistry", "AccountRegistry", "TokenRegistry", "Faucet", "DefaultToken",
               "AddressDeclarator", "TransferAuthorization")

REGISTRY = artifact("Registry")
ACCOUNTS_INDEX = artifact("AccountsIndex")
TOKEN_INDEX = artifact("TokenUniqueSymbolIndex")
TOKEN = artifact("GiftableToken")
FAUCET = artifact("ERC20Faucet")
#: topic 0 of ``AddressAdded(address)``.
ADDRESS_ADDED = ACCOUNTS_INDEX.topic("AddressAdded")


def key32(name: str) -> bytes:
    raw = name.encode()
    if len(raw) > 32:
        raise UsageError(f"{name!r} is longer than 32 bytes and cannot be a registry key")
    return raw.ljust(32, b"\0")


def name_of(key: bytes) -> str:
    return key.rstrip(b"\0").decode(errors="replace")


def checksum(address: str, what: str) -> str:
    """``address`` checksummed; UsageError if it is not one, or if its mixed case breaks its
    EIP-55 checksum (a mistyped character)."""
    if not is_address(address):
        raise UsageError(f"{what} {address!r} is not an address (0x and 40 hex characters)")
    hex_part = address[2:]
    if hex_part not in (hex_part.lower(), hex_part.upper()) and not is_checksum_address(address):
        raise UsageError(f"{what} {address} fails its EIP-55 checksum: a character may be "
                         "mistyped", hint="copy the address again (all lower case skips the "
                         "check)")
    return str(to_checksum_address(address))


@dataclass(frozen=True)
class Token:
    address: str
    symbol: str
    decimals: int
    name: str = ""


class CicNetwork:
    """The contracts of one registry, resolved lazily and cached."""

    def __init__(self, client: ChainClient, registry: str) -> None:
        self.client = client
        self.registry = checksum(registry, "registry address")

    def check_registry(self) -> None:
        """ContractError if nothing answers at the registry address."""
        if not self.client.code(self.registry):
            raise ContractError(
                f"no contract at registry address {self.registry} on {self.client.rpc.url}",
                hint="check -r / CIC_REGISTRY_ADDRESS (or --devnet DIR)")

    def check_chain_id(self, spec: ChainSpec, source: str | None = None) -> None:
        """ConfigError if the node is another chain than ``spec`` names (an importer would
        otherwise write identities of the wrong chain, a syncer wait for registrations that
        never come). ``source`` says where the spec came from (``manifest.json (DIR)``, ...)."""
        chain_id = self.client.chain_id
        if chain_id != spec.network_id:
            where = f" (from {source})" if source else ""
            raise ConfigError(
                f"the node at {self.client.rpc.url} has chain id {chain_id}, but the chain spec "
                f"{spec}{where} says {spec.network_id}",
                hint="point --devnet / -p at the chain the spec names, or name the node's chain "
                "with -i / --chain-spec (CIC_CHAIN_SPEC)")

    def holdings(self) -> dict[str, str]:
        """Identifier -> address of everything the registry declares (zero if unset)."""
        count = self.client.call(self.registry, REGISTRY.fn("identifierCount"))
        keys = self.client.call_many([(self.registry, REGISTRY.fn("identifier"), (i,))
                                      for i in range(count)])
        names = [name_of(k) for k in keys if isinstance(k, bytes)]
        addresses = self.client.call_many([(self.registry, REGISTRY.fn("addressOf"),
                                            (key32(n),)) for n in names])
        return {n: str(to_checksum_address(a)) for n, a in zip(names, addresses, strict=True)
                if isinstance(a, str)}

    def resolve(self, identifier: str) -> str:
        """The address registered under ``identifier``; RegistryLookupError if none."""
        self.check_registry()
        try:
            address = self.client.call(self.registry, REGISTRY.fn("addressOf"),
                                       key32(identifier))
        except ContractError as exc:
            raise ContractError(
                f"the contract at registry address {self.registry} does not answer "
                f"addressOf({identifier!r}) ({exc.message}): it is not a CIC registry",
                hint="check -r / CIC_REGISTRY_ADDRESS (or --devnet DIR)") from exc
        if int(address, 16) == 0:
            held = ", ".join(f"{n}={a}" for n, a in self.holdings().items() if int(a, 16)) \
                or "nothing"
            raise RegistryLookupError(
                f"registry {self.registry} has no address for {identifier!r}",
                hint=f"it holds: {held}")
        return str(to_checksum_address(address))

    @cached_property
    def accounts_index(self) -> str:
        return self.resolve("AccountRegistry")

    @cached_property
    def token_index(self) -> str:
        return self.resolve("TokenRegistry")

    @cached_property
    def faucet(self) -> str:
        return self.resolve("Faucet")

    def token(self, symbol: str | None = None) -> Token:
        """The token with ``symbol`` (default: the registry's DefaultToken)."""
        if symbol is None:
            address = self.resolve("DefaultToken")
        else:
            address = self.client.call(self.token_index, TOKEN_INDEX.fn("addressOf"),
                                       key32(symbol))
            if int(address, 16) == 0:
                known = self.token_symbols()
                close = difflib.get_close_matches(symbol, known, n=1)
                near = f"did you mean {close[0]}? " if close else ""
                raise RegistryLookupError(
                    f"token symbol {symbol!r} is not in the token index at {self.token_index}",
                    hint=f"{near}registered symbols: {', '.join(known) or 'none'}")
        symbol_, decimals, name = self.client.call_many([
            (address, TOKEN.fn("symbol"), ()), (address, TOKEN.fn("decimals"), ()),
            (address, TOKEN.fn("name"), ())])
        for value in (symbol_, decimals):
            if isinstance(value, Exception):
                raise ContractError(f"token at {address} does not answer symbol()/decimals(): "
                                    f"{value}")
        return Token(str(to_checksum_address(address)), symbol_, decimals,
                     name if isinstance(name, str) else "")

    def faucet_payout(self, token: Token) -> int:
        """What the faucet gives a user in ``token`` (0 when the faucet pays another token)."""
        faucet_token, amount = self.client.call_many([
            (self.faucet, FAUCET.fn("token"), ()), (self.faucet, FAUCET.fn("tokenAmount"), ())])
        if isinstance(faucet_token, Exception) or isinstance(amount, Exception):
            raise ConfigError(f"the faucet at {self.faucet} does not answer "
                              "token()/tokenAmount()")
        if faucet_token.lower() != token.address.lower():
            log.info("the faucet pays another token (%s); no faucet payouts in %s",
                     faucet_token, token.symbol)
            return 0
        return int(amount)

    def token_symbols(self) -> list[str]:
        count = self.client.call(self.token_index, TOKEN_INDEX.fn("entryCount"))
        tokens = self.client.call_many([(self.token_index, TOKEN_INDEX.fn("entry"), (i,))
                                        for i in range(count)])
        symbols = self.client.call_many([(t, TOKEN.fn("symbol"), ()) for t in tokens
                                         if isinstance(t, str)])
        return sorted(s for s in symbols if isinstance(s, str))

    def is_writer(self, contract: str, address: str) -> bool:
        return bool(self.client.call(contract, ACCOUNTS_INDEX.fn("isWriter"), address))
