"""From settings to a connected network: ``rpc_url``, ``registry_address`` and ``keyfile``
(``-p RPC -r REGISTRY -y KEYFILE``, or a devnet's, which the settings loader fills in).
"""

from __future__ import annotations

from cic_seeding.chain.client import ChainClient
from cic_seeding.chain.reader import NetworkReader
from cic_seeding.chain.registry import CicNetwork
from cic_seeding.chain.rpc import JsonRpc
from cic_seeding.chain.signer import Signer, read_password
from cic_seeding.config import MINING_AUTO, MINING_EXPLICIT, Settings
from cic_seeding.errors import ConfigError, RpcError
from cic_seeding.records.chainspec import ChainSpec
from cic_seeding.remote import BreakerPolicy


def mines_on_request(rpc: JsonRpc) -> bool:
    """True for a dev node (anvil, hardhat) that mines only on ``evm_mine``: automine off and
    no block interval. anvil ``--block-time N`` reports automine off too, but mines every N
    seconds by itself, like a real network, so it is asked for none. A node that knows neither
    question (geth, a public network) mines by itself."""
    automine = _ask(rpc, "anvil_getAutomine")
    if automine is None:
        automine = _ask(rpc, "hardhat_getAutomine")
    if automine is not False:
        return False
    return not _ask(rpc, "anvil_getIntervalMining")  # seconds, or null when not mining so


def _ask(rpc: JsonRpc, method: str) -> object:
    """The node's answer to a parameterless dev method; None if it does not know it."""
    try:
        return rpc.call(method)
    except RpcError:
        return None


def explicit_mining(settings: Settings, rpc: JsonRpc) -> bool:
    """Whether clients must ask the node to mine (setting ``mining``; detect: ask the node)."""
    if settings.mining == MINING_EXPLICIT:
        return True
    if settings.mining == MINING_AUTO:
        return False
    return mines_on_request(rpc)


def connect(settings: Settings, *, signer: bool = True) -> CicNetwork:
    """A client and network for the settings; with ``signer`` the keyfile is decrypted."""
    if not settings.rpc_url:
        raise ConfigError("no chain given",
                          hint="give --devnet DIR, or -p RPC_URL -r REGISTRY -y KEYFILE "
                          "(CIC_DEVNET_DIR / CIC_RPC_URL ...)")
    rpc = JsonRpc(settings.rpc_url, timeout=settings.rpc_timeout, retries=settings.rpc_retries,
                  breaker=BreakerPolicy.from_settings(settings))
    key: Signer | None = None
    if signer:
        if not settings.keyfile:
            raise ConfigError("no signing key given",
                              hint="give -y KEYFILE (CIC_KEYFILE) or --devnet DIR")
        key = Signer.from_keyfile(settings.keyfile, read_password(
            settings.keyfile_password, settings.keyfile_password_file,
            f"keyfile {settings.keyfile}"))
    if not settings.registry_address:
        raise ConfigError("no registry address given",
                          hint="give -r REGISTRY (CIC_REGISTRY_ADDRESS) or --devnet DIR")
    client = ChainClient(rpc, signer=key, explicit_mining=explicit_mining(settings, rpc))
    return CicNetwork(client, settings.registry_address)


def checked_chain(network: CicNetwork, settings: Settings) -> ChainSpec:
    """The chain spec of ``settings``; ConfigError (one line naming both chain ids and where
    the spec came from) if ``network``'s node is another chain."""
    spec = ChainSpec.parse(settings.chain_spec)
    network.check_chain_id(spec, settings.source_of("chain_spec"))
    return spec


def verify_chain(settings: Settings) -> NetworkReader:
    """The verifier's batched reader of the network and token the settings name."""
    network = connect(settings, signer=False)
    checked_chain(network, settings)
    return NetworkReader(network, settings.token_symbol)
