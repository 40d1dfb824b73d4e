"""``cic-seed doctor`` tells the truth: all ok on a devnet with every service (metadata server,
custodial engine, USSD gateway), and on each injected misconfiguration exactly the broken part
fails, saying what to do. Real anvil, real servers. (The published CIC contracts:
tests/genuine/test_genuine.py.)"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cic_devnet import anvil
from cic_devnet.custodial.devnet import EngineOptions
from cic_devnet.deploy import DeployOptions
from cic_devnet.devnet import Devnet
from cic_devnet.meta.process import start_meta_server
from cic_seeding.chain.client import ChainClient
from cic_seeding.chain.keyfile import encrypt_v3
from cic_seeding.chain.registry import ACCOUNTS_INDEX, CicNetwork
from cic_seeding.chain.rpc import JsonRpc
from cic_seeding.chain.signer import Signer
from cic_seeding.chain.tx import Call
from tests.conftest import start_devnet
from tests.custodial.world import REDIS_URL, purge_queue
from tests.generate._incli import InCli, cli  # noqa: F401  (fixture)
from tests.helpers import free_port
from tests.pg import PG_URL, drop_schema

CHAIN_CHECKS = ["rpc", "chain id", "registry", "registry AccountRegistry",
                "registry TokenRegistry", "registry Faucet", "registry DefaultToken", "token",
                "signer", "signer writes AccountsIndex", "signer pays from Faucet", "signer gas",
                "signer tokens"]


def findings(stdout: str) -> dict[str, tuple[bool, str]]:
    """``{check: (ok, detail)}`` of doctor's lines."""
    out = {}
    for line in stdout.splitlines():
        state, _, rest = line.partition(" ")
        check, _, detail = rest.strip().partition(": ")
        assert state in ("ok", "FAIL") and check not in out, line
        out[check] = (state == "ok", detail)
    return out


def failed(stdout: str) -> dict[str, str]:
    return {check: detail for check, (ok, detail) in findings(stdout).items() if not ok}


def explicit(devnet: Devnet, keyfile: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """``-p -r -y`` of ``devnet`` (its deployer unless ``keyfile``, whose password is pw)."""
    if keyfile is None:
        return (["-p", devnet.rpc_url, "-r", devnet.registry, "-y",
                 str(devnet.directory / "deployer.json")],
                {"CIC_KEYFILE_PASSWORD_FILE": str(devnet.directory / "deployer.pw")})
    return (["-p", devnet.rpc_url, "-r", devnet.registry, "-y", str(keyfile)],
            {"CIC_KEYFILE_PASSWORD": "pw"})


def keyfile(path: Path, key: str) -> Path:
    path.write_text(json.dumps(encrypt_v3(bytes.fromhex(key.removeprefix("0x")), "pw",
                                          n=2**8)))
    return path


def nothing_listens() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def full_devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    """A devnet with the metadata server, the custodial engine and the USSD gateway, each on
    schemas and a queue of its own (dropped after)."""
    tag = uuid.uuid4().hex[:12]
    options = EngineOptions(db_url=PG_URL, schema=f"cust_{tag}", queue=f"doctor_{tag}")
    try:
        yield from start_devnet(tmp_path_factory.mktemp("full"), ussd=True,
                                custodial_options=options, ussd_db=PG_URL,
                                ussd_schema=f"ussd_{tag}")
    finally:
        purge_queue(REDIS_URL, f"doctor_{tag}")
        drop_schema(f"cust_{tag}")
        drop_schema(f"ussd_{tag}")


def test_all_ok_on_a_devnet_with_every_service(cli: InCli, full_devnet: Devnet) -> None:  # noqa: F811
    run = cli("doctor", "--devnet", str(full_devnet.directory))
    assert run.returncode == 0, run
    assert list(findings(run.stdout)) == [*CHAIN_CHECKS, "metadata server", "custodial engine",
                                          "USSD gateway"]
    assert findings(run.stdout)["USSD gateway"] == (
        True, f"{full_devnet.info['ussd']['url']} answers the USSD protocol for *483*46#")
    assert findings(run.stdout)["signer pays from Faucet"][1].endswith("the signer is a writer")


def test_a_service_that_is_down_or_refuses_is_named(cli: InCli, full_devnet: Devnet,  # noqa: F811
                                                    tmp_path: Path) -> None:
    meta = start_meta_server(db=str(tmp_path / "meta.db"))
    meta.stop()  # it was there; now nothing answers at its URL
    dn = ["--devnet", str(full_devnet.directory)]
    run = cli("doctor", *dn, env={"CIC_META_URL": meta.url})
    assert run.returncode == 1
    assert failed(run.stdout) == {"metadata server": (
        f"metadata server {meta.url} does not answer GET /{'0' * 64} "
        "(connection refused or reset); start it (`cic-seed devnet up --meta`) or fix meta_url "
        "(CIC_META_URL); without it the cic_meta importer and the metadata checks cannot run")}

    gateway = nothing_listens()
    run = cli("doctor", *dn, env={"CIC_USSD_URL": gateway})
    assert run.returncode == 1
    assert failed(run.stdout) == {"USSD gateway": (
        f"the USSD gateway {gateway} does not answer (ConnectionError); start it "
        "(`cic-seed devnet up --ussd`) or fix ussd_url (CIC_USSD_URL)")}

    run = cli("doctor", *dn, env={"CIC_USSD_SERVICE_CODE": "*1#"})
    assert run.returncode == 1
    assert failed(run.stdout) == {"USSD gateway": (
        f"the USSD gateway {full_devnet.info['ussd']['url']} refuses the service code *1#: "
        "\"END Unknown service code '*1#'; this gateway serves *483*46#\"; set "
        "ussd_service_code (CIC_USSD_SERVICE_CODE) to one it serves")}

    run = cli("doctor", *dn, env={"CIC_USSD_URL": meta_url_of(full_devnet)})
    assert run.returncode == 1  # a server there, but no USSD gateway
    (detail,) = failed(run.stdout).values()
    assert "not a USSD screen (CON/END)" in detail, detail


def meta_url_of(devnet: Devnet) -> str:
    return str(devnet.info["meta"]["url"])


def test_a_wrong_registry_address_is_named(cli: InCli, module_devnet: Devnet) -> None:  # noqa: F811
    args, env = explicit(module_devnet)
    args[3] = "0x000000000000000000000000000000000000dEaD"
    run = cli("doctor", *args, env=env)
    assert run.returncode == 1
    assert failed(run.stdout) == {"registry": (
        f"no contract at registry address {args[3]} on {module_devnet.rpc_url}; check -r / "
        "CIC_REGISTRY_ADDRESS (or --devnet DIR)")}

    index = CicNetwork(ChainClient(JsonRpc(module_devnet.rpc_url)),
                       module_devnet.registry).accounts_index
    args[3] = index  # code, but no registry
    run = cli("doctor", *args, env=env)
    assert run.returncode == 1
    bad = failed(run.stdout)
    assert set(bad) == {f"registry {n}" for n in ("AccountRegistry", "TokenRegistry", "Faucet",
                                                   "DefaultToken")} | {"token"}, bad
    assert bad["registry Faucet"].startswith(
        f"the contract at registry address {index} does not answer addressOf('Faucet')")
    assert bad["registry Faucet"].endswith(
        "it is not a CIC registry; check -r / CIC_REGISTRY_ADDRESS (or --devnet DIR)")


def test_a_wrong_chain_id_is_named_with_both_ids(cli: InCli, module_devnet: Devnet) -> None:  # noqa: F811
    args, env = explicit(module_devnet)
    run = cli("doctor", *args, "-i", "evm:byzantium:1:mainnet", env=env)
    assert run.returncode == 1
    assert failed(run.stdout) == {"chain id": (
        f"the node at {module_devnet.rpc_url} has chain id 8996, but the chain spec "
        "evm:byzantium:1:mainnet (from flag) says 1; point --devnet / -p at the chain the spec "
        "names, or name the node's chain with -i / --chain-spec (CIC_CHAIN_SPEC)")}


def test_a_signer_without_tokens_is_named(cli: InCli, module_devnet: Devnet,  # noqa: F811
                                          tmp_path: Path) -> None:
    key = "0x" + "5a" * 32
    me = Signer.from_key(key).address
    owner = ChainClient(JsonRpc(module_devnet.rpc_url), signer=Signer.from_key(anvil.dev_key(0)),
                        explicit_mining=True)
    net = CicNetwork(owner, module_devnet.registry)
    anvil.rpc(module_devnet.rpc_url, "anvil_setBalance", [me, hex(10**18)])
    for contract in (net.accounts_index, net.faucet):  # a writer, with gas: only tokens lack
        owner.transact(Call(contract, ACCOUNTS_INDEX.encode("addWriter", me)), "addWriter")
    args, env = explicit(module_devnet, keyfile(tmp_path / "k.json", key))
    run = cli("doctor", *args, env=env)
    assert run.returncode == 1
    assert failed(run.stdout) == {"signer tokens": (
        f"{me} holds no GFT; opening balances are transfers from the signer: fund it, or sync "
        "with --mint if it is a token writer")}


def test_a_signer_the_faucet_refuses_is_named(cli: InCli, module_devnet: Devnet,  # noqa: F811
                                              tmp_path: Path) -> None:
    key = "0x" + "5b" * 32
    me = Signer.from_key(key).address
    net = CicNetwork(ChainClient(JsonRpc(module_devnet.rpc_url)), module_devnet.registry)
    anvil.rpc(module_devnet.rpc_url, "anvil_setBalance", [me, hex(10**18)])
    args, env = explicit(module_devnet, keyfile(tmp_path / "k.json", key))
    bad = failed(cli("doctor", *args, env=env).stdout)
    deployer = Signer.from_key(anvil.dev_key(0)).address
    assert bad["signer pays from Faucet"] == (
        f"{me} may not call giveTo on the faucet {net.faucet} (execution reverted: Writable: "
        f"caller is not a writer); ask its owner {deployer.lower()} to call addWriter({me}), "
        "or sign with a writer")
    assert set(bad) == {"signer writes AccountsIndex", "signer pays from Faucet",
                        "signer tokens"}


def test_a_faucet_without_funds_is_named(cli: InCli, tmp_path: Path) -> None:  # noqa: F811
    for devnet in start_devnet(tmp_path / "dn", options=DeployOptions(faucet_funds_units=0)):
        run = cli("doctor", "--devnet", str(devnet.directory))
        assert run.returncode == 1
        faucet = devnet.info["contracts"]["ERC20Faucet"]
        assert failed(run.stdout) == {"signer pays from Faucet": (
            f"the faucet {faucet} holds 0.00 GFT, less than one payout of 5.00 GFT; transfer "
            "or mint GFT to the faucet")}
