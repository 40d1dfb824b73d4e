"""The chain access layer and the devnet on a real anvil: resolution, writes, and the errors."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import eth_keyfile
import pytest

from cic_devnet.anvil import dev_key
from cic_devnet.devnet import Devnet, devnet_down, devnet_up
from cic_seeding.chain.client import ChainClient
from cic_seeding.chain.connect import connect
from cic_seeding.chain.registry import ACCOUNTS_INDEX, FAUCET, IDENTIFIERS, TOKEN, CicNetwork
from cic_seeding.chain.rpc import JsonRpc
from cic_seeding.chain.signer import Signer
from cic_seeding.chain.tx import Call
from cic_seeding.errors import (
    ConfigError,
    ContractError,
    RegistryLookupError,
    RpcUnavailableError,
    ServiceError,
    SignerError,
    TransactionError,
)
from tests.conftest import devnet_settings
from tests.helpers import run_cli

ALICE, BOB = "0x" + "a1" * 20, "0x" + "b0" * 20


def network(devnet: Devnet, key: str | None = None) -> CicNetwork:
    signer = Signer.from_key(key or dev_key(0))
    return CicNetwork(ChainClient(JsonRpc(devnet.rpc_url), signer=signer,
                                  explicit_mining=True), devnet.registry)


def test_every_identifier_resolves(module_devnet: Devnet) -> None:
    net = network(module_devnet)
    held = net.holdings()
    assert list(held) == list(IDENTIFIERS)
    for name in ("ContractRegistry", "AccountRegistry", "TokenRegistry", "Faucet",
                 "DefaultToken"):
        assert net.resolve(name) == held[name]
    assert net.resolve("ContractRegistry") == module_devnet.registry
    token = net.token()
    assert (token.symbol, token.decimals) == ("GFT", 6)
    assert net.token("GFT") == token


def test_mint_transfer_add_and_faucet(module_devnet: Devnet) -> None:
    net = network(module_devnet)
    client, token = net.client, net.token()
    client.transact(Call(token.address, TOKEN.encode("mintTo", ALICE, 7)), "mint")
    client.transact(Call(token.address, TOKEN.encode("transfer", ALICE, 5)), "transfer")
    assert client.call(token.address, TOKEN.fn("balanceOf"), ALICE) == 12
    client.transact(Call(net.accounts_index, ACCOUNTS_INDEX.encode("add", ALICE)), "add")
    assert client.call(net.accounts_index, ACCOUNTS_INDEX.fn("have"), ALICE) is True
    amount = client.call(net.faucet, FAUCET.fn("tokenAmount"))
    assert amount > 0
    client.transact(Call(net.faucet, FAUCET.encode("giveTo", ALICE), gas=200_000), "give")
    assert client.call(token.address, TOKEN.fn("balanceOf"), ALICE) == 12 + amount
    assert client.call(net.faucet, FAUCET.fn("nextTime"), ALICE) != 0
    # a second payout to the same account reverts, with the contract's reason
    with pytest.raises(TransactionError, match="cooldown"):
        client.transact(Call(net.faucet, FAUCET.encode("giveTo", ALICE), gas=200_000), "give")


def test_wrong_registry_address_is_a_clear_error(module_devnet: Devnet) -> None:
    net = CicNetwork(network(module_devnet).client, BOB)
    with pytest.raises(ContractError, match=f"no contract at registry address .*{BOB[2:6]}"):
        net.resolve("AccountRegistry")


def test_unknown_token_symbol_lists_the_registered_ones(module_devnet: Devnet) -> None:
    with pytest.raises(RegistryLookupError) as err:
        network(module_devnet).token("GTF")
    assert "'GTF' is not in the token index" in str(err.value)
    assert "did you mean GFT?" in str(err.value)
    assert "registered symbols: GFT" in str(err.value)


def test_unset_identifier_names_what_the_registry_holds(module_devnet: Devnet) -> None:
    with pytest.raises(RegistryLookupError, match="no address for 'AddressDeclarator'.*"
                       "it holds: ContractRegistry="):
        network(module_devnet).resolve("AddressDeclarator")


def test_signer_that_is_not_a_writer(module_devnet: Devnet) -> None:
    stranger = network(module_devnet, key="0x" + "42" * 32)
    deployer = network(module_devnet)
    deployer.client.transact(Call(stranger.client.signer.address, b"", value=10**18,  # type: ignore[union-attr]
                                  gas=21_000), "gas for the stranger")
    with pytest.raises(TransactionError, match="not a writer"):
        stranger.client.transact(
            Call(stranger.accounts_index, ACCOUNTS_INDEX.encode("add", BOB)), "add")
    result = run_cli("doctor", "-p", module_devnet.rpc_url, "-r", module_devnet.registry,
                     "-y", str(_keyfile(module_devnet.directory.parent / "k.json", "42" * 32)),
                     env={"CIC_KEYFILE_PASSWORD": "pw"})
    assert result.returncode == 1
    assert "FAIL signer writes AccountsIndex" in result.stdout
    assert "ask its owner to call addWriter" in result.stdout


def _keyfile(path: Path, key: str) -> Path:
    doc = eth_keyfile.create_keyfile_json(bytes.fromhex(key), b"pw", kdf="scrypt",
                                          iterations=2**10)
    path.write_text(json.dumps(doc))
    return path


def test_wrong_keyfile_password(tmp_path: Path) -> None:
    path = _keyfile(tmp_path / "k.json", "42" * 32)
    with pytest.raises(SignerError, match="wrong password for keyfile"):
        Signer.from_keyfile(path, "nope")
    assert "pw" not in repr(Signer.from_keyfile(path, "pw"))


def test_a_key_or_password_file_others_can_read_is_one_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from cic_seeding.chain.signer import read_password

    path, secret = _keyfile(tmp_path / "k.json", "42" * 32), tmp_path / "pw"
    secret.write_text("pw\n")
    for p in (path, secret):
        p.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="cic_seeding.chain.signer"):
        Signer.from_keyfile(path, read_password(None, str(secret), "keyfile"))
        assert caplog.messages == []
        path.chmod(0o644)
        secret.chmod(0o640)
        Signer.from_keyfile(path, read_password(None, str(secret), "keyfile"))
    assert caplog.messages == [
        f"the keyfile password file {secret} can be read by others than its owner (mode 0640): "
        "chmod 600 it",
        f"keyfile {path} can be read by others than its owner (mode 0644): chmod 600 it"]


def test_rpc_that_is_down(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens
    rpc = JsonRpc(f"http://127.0.0.1:{port}", retries=2, backoff=0.01)
    with pytest.raises(RpcUnavailableError, match="does not answer .connection refused."):
        rpc.call("eth_chainId")
    result = run_cli("doctor", "-p", f"http://127.0.0.1:{port}", "-r", BOB,
                     env={"CIC_RPC_RETRIES": "1"})
    assert result.returncode == 1
    assert "FAIL rpc:" in result.stdout and "connection refused" in result.stdout
    assert "Traceback" not in result.stderr


def test_no_chain_given_says_what_to_give(tmp_path: Path) -> None:
    from cic_seeding.config import load_settings

    with pytest.raises(ConfigError, match="give --devnet DIR, or -p RPC_URL"):
        connect(load_settings({}, environ={}))


def test_two_devnets_at_once(tmp_path: Path) -> None:
    first = devnet_up(tmp_path / "a")
    try:
        second = devnet_up(tmp_path / "b", chain_spec="evm:london:1234:other")
        try:
            assert first.rpc_url != second.rpc_url
            assert network(first).client.chain_id == 8996
            assert network(second).client.chain_id == 1234
            assert network(second).token().symbol == "GFT"
        finally:
            second.stop()
    finally:
        first.stop()


def test_devnet_refuses_a_second_start_and_reloads_state(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    devnet = devnet_up(tmp_path / "dn", state=state, detach=True)
    try:
        with pytest.raises(ServiceError, match="a devnet already runs"):
            devnet_up(tmp_path / "dn")
        net = network(devnet)
        net.client.transact(Call(net.accounts_index, ACCOUNTS_INDEX.encode("add", ALICE)), "add")
    finally:
        assert devnet_down(tmp_path / "dn") is True
    assert devnet_down(tmp_path / "dn") is False  # already stopped: not an error
    again = devnet_up(tmp_path / "dn", state=state)
    try:
        assert again.registry == devnet.registry
        net = network(again)
        assert net.client.call(net.accounts_index, ACCOUNTS_INDEX.fn("have"), ALICE) is True
    finally:
        again.stop()


def test_devnet_cli_up_doctor_down(tmp_path: Path) -> None:
    up = run_cli("devnet", "up", "--dir", str(tmp_path / "dn"))
    try:
        assert up.returncode == 0, up.stderr
        registry = up.stdout.strip()
        info = json.loads((tmp_path / "dn" / "devnet.json").read_text())
        assert info["registry"] == registry
        assert (tmp_path / "dn" / "deployer.json").stat().st_mode & 0o777 == 0o600
        doctor = run_cli("doctor", "--devnet", str(tmp_path / "dn"))
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert doctor.stdout.count("ok  ") >= 12
        password = (tmp_path / "dn" / "deployer.pw").read_text()
        assert password not in doctor.stdout + doctor.stderr
    finally:
        down = run_cli("devnet", "down", "--dir", str(tmp_path / "dn"))
    assert down.returncode == 0 and "devnet stopped" in down.stdout


def test_config_show_masks_the_signer_password(tmp_path: Path) -> None:
    result = run_cli("config", "show", env={"CIC_KEYFILE_PASSWORD": "s3cret-pw"})
    assert result.returncode == 0
    assert "s3cret-pw" not in result.stdout and "keyfile_password" in result.stdout


def test_settings_for_devnet_resolve_the_deployer(module_devnet: Devnet, tmp_path: Path) -> None:
    net = connect(devnet_settings(module_devnet, tmp_path))
    assert net.client.signer is not None
    assert net.client.signer.address == Signer.from_key(dev_key(0)).address
    assert net.client.explicit_mining
