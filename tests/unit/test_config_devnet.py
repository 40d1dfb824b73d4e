"""The settings loader turns a devnet directory's file into ordinary settings values:
precedence flag > env > config file > devnet file > default, file names relative to the devnet
directory, companions only with their devnet value, ``batch_funder = devnet``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cic_seeding.chain.funder import resolve
from cic_seeding.config import DEVNET_FILE, describe, load_settings
from cic_seeding.custodial import endpoint, unconfigured
from cic_seeding.errors import ConfigError
from cic_seeding.importers.meta import meta_client
from cic_seeding.ussd.client import ussd_endpoint
from cic_seeding.verify.checks.metadata import metadata_unconfigured
from tests.generate._incli import InCli

REGISTRY = "0x" + "12" * 20
FUNDER = "0x" + "34" * 20


def devnet_doc(**extra: Any) -> dict[str, Any]:
    """What ``cic-seed devnet up --ussd`` writes (the parts the settings take)."""
    doc: dict[str, Any] = {
        "rpc_url": "http://127.0.0.1:8545", "chain_spec": "evm:byzantium:4242:devnet",
        "chain_id": 4242, "registry": REGISTRY, "mining": "explicit",
        "deployer": {"address": "0x" + "56" * 20, "keyfile": "deployer.json",
                     "password_file": "deployer.pw"},
        "contracts": {"BatchFunder": FUNDER},
        "meta": {"url": "http://127.0.0.1:9001", "token_file": "meta.token", "pid": 1},
        "custodial": {"broker_url": "redis://127.0.0.1:6379/5", "queue": "cic_custodial_x",
                      "db_url": "postgresql://u:****@127.0.0.1/cic", "db_schema": "devnet_x",
                      "passphrase_file": "custodial.passphrase",
                      "signer": {"address": "0x" + "78" * 20, "keyfile": "custodial-signer.json",
                                 "password_file": "custodial-signer.pw"}, "workers": []},
        "ussd": {"url": "http://127.0.0.1:9002", "service_code": "*384*1#",
                 "db": "postgresql://u:pw@127.0.0.1/ussd", "schema": "ussd_x"},
    }
    doc.update(extra)
    return doc


def make_devnet(root: Path, **extra: Any) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / DEVNET_FILE).write_text(json.dumps(devnet_doc(**extra)))
    return root


@pytest.fixture()
def devnet(tmp_path: Path) -> Path:
    return make_devnet(tmp_path / "net")


def test_every_devnet_fact_becomes_a_setting_marked_with_its_source(devnet: Path) -> None:
    s = load_settings({"devnet_dir": str(devnet)}, None, {})
    source = f"devnet.json ({devnet})"
    expected = {
        "rpc_url": "http://127.0.0.1:8545", "registry_address": REGISTRY,
        "chain_spec": "evm:byzantium:4242:devnet", "mining": "explicit",
        "keyfile": str(devnet / "deployer.json"),
        "keyfile_password_file": str(devnet / "deployer.pw"),
        "meta_url": "http://127.0.0.1:9001", "meta_token_file": str(devnet / "meta.token"),
        "custodial_broker_url": "redis://127.0.0.1:6379/5", "custodial_queue": "cic_custodial_x",
        "custodial_db_url": "postgresql://u:****@127.0.0.1/cic",
        "custodial_db_schema": "devnet_x",
        "custodial_passphrase_file": str(devnet / "custodial.passphrase"),
        "custodial_keyfile": str(devnet / "custodial-signer.json"),
        "custodial_keyfile_password_file": str(devnet / "custodial-signer.pw"),
        "ussd_url": "http://127.0.0.1:9002", "ussd_service_code": "*384*1#",
        "ussd_db_url": "postgresql://u:pw@127.0.0.1/ussd", "ussd_db_schema": "ussd_x",
    }
    for name, value in expected.items():
        assert (getattr(s, name), s.source_of(name)) == (value, source), name
    assert s.source_of("devnet_dir") == "flag"
    assert (s.batch_funder, s.source_of("batch_funder")) == (None, "default")
    assert s.devnet_deployer_signs


def test_modules_take_the_devnet_values_as_plain_settings(devnet: Path) -> None:
    (devnet / "meta.token").write_text("tok\n")
    s = load_settings({"devnet_dir": str(devnet)}, None, {})
    assert endpoint(s) == ("redis://127.0.0.1:6379/5", "cic_custodial_x")
    assert unconfigured(s) is None and metadata_unconfigured(s) is None
    ep = ussd_endpoint(s)
    assert ep is not None and (ep.url, ep.service_code) == ("http://127.0.0.1:9002", "*384*1#")
    with meta_client(s) as client:
        assert client.url.rstrip("/") == "http://127.0.0.1:9001"


def test_precedence_flag_env_file_devnet_default(devnet: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('rpc_url = "http://file"\nregistry_address = "0xfile"\n'
                   'meta_url = "http://meta-file"\n')
    env = {"CIC_RPC_URL": "http://env", "CIC_CHAIN_SPEC": "evm:byzantium:1:env",
           "CIC_DEVNET_DIR": str(devnet)}
    s = load_settings({"rpc_url": "http://flag"}, cfg, env)
    assert (s.rpc_url, s.source_of("rpc_url")) == ("http://flag", "flag")
    assert (s.chain_spec, s.source_of("chain_spec")) == ("evm:byzantium:1:env",
                                                         "env CIC_CHAIN_SPEC")
    assert (s.registry_address, s.source_of("registry_address")) == ("0xfile", str(cfg))
    assert (s.ussd_url, s.source_of("ussd_url")) == ("http://127.0.0.1:9002",
                                                     f"devnet.json ({devnet})")
    assert (s.workers, s.source_of("workers")) == (0, "default")
    assert s.source_of("devnet_dir") == "env CIC_DEVNET_DIR"
    # the devnet's token file belongs with its URL, not with the config file's server
    assert (s.meta_url, s.meta_token_file) == ("http://meta-file", None)
    # a registry other than the devnet's: not the devnet's own contracts to grant rights on
    assert not s.devnet_deployer_signs
    # a flag for the devnet directory beats the environment's
    other = make_devnet(tmp_path / "other", rpc_url="http://other:8545")
    s = load_settings({"devnet_dir": str(other)}, None, env)
    assert (s.registry_address, s.source_of("registry_address")) == (
        REGISTRY, f"devnet.json ({other})")


def test_the_deployers_password_file_only_goes_with_the_deployers_keyfile(devnet: Path,
                                                                         tmp_path: Path) -> None:
    mine = str(tmp_path / "mine.json")
    s = load_settings({"devnet_dir": str(devnet), "keyfile": mine}, None, {})
    assert (s.keyfile, s.keyfile_password_file) == (mine, None)
    assert s.source_of("keyfile_password_file") == "default"
    assert not s.devnet_deployer_signs
    s = load_settings({"devnet_dir": str(devnet)}, None,
                      {"CIC_KEYFILE_PASSWORD_FILE": "/run/pw"})
    assert (s.keyfile, s.keyfile_password_file) == (str(devnet / "deployer.json"), "/run/pw")
    s = load_settings({"devnet_dir": str(devnet), "ussd_url": "http://gw"}, None, {})
    assert (s.ussd_url, s.ussd_service_code) == ("http://gw", None)
    s = load_settings({"devnet_dir": str(devnet), "ussd_db_url": "postgresql://x/y"}, None, {})
    assert s.ussd_db_schema is None
    # the custodial database password is masked in the file: give the URL, keep the schema
    s = load_settings({"devnet_dir": str(devnet), "custodial_db_url": "postgresql://x/y"},
                      None, {})
    assert (s.custodial_db_url, s.custodial_db_schema) == ("postgresql://x/y", "devnet_x")


def test_relative_names_resolve_against_the_devnet_directory(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    make_devnet(tmp_path / "rel", deployer={"keyfile": "/abs/deployer.json",
                                            "password_file": "sub/deployer.pw"})
    monkeypatch.chdir(tmp_path)
    s = load_settings({"devnet_dir": "rel"}, None, {})
    assert s.keyfile == "/abs/deployer.json"
    assert s.keyfile_password_file == str(Path("rel") / "sub" / "deployer.pw")
    assert s.meta_token_file == str(Path("rel") / "meta.token")
    assert s.source_of("keyfile") == "devnet.json (rel)"


def test_a_devnet_without_services_leaves_their_settings_unset(tmp_path: Path) -> None:
    root = tmp_path / "bare"
    root.mkdir()
    (root / DEVNET_FILE).write_text(json.dumps({"rpc_url": "http://127.0.0.1:1",
                                                "registry": REGISTRY, "mining": "auto"}))
    s = load_settings({"devnet_dir": str(root)}, None, {})
    assert (s.rpc_url, s.mining) == ("http://127.0.0.1:1", "auto")
    assert s.keyfile is None and s.meta_url is None and s.ussd_url is None
    assert s.chain_spec == "evm:byzantium:8996:bloxberg" and s.source_of("chain_spec") == "default"
    assert "no custodial engine is configured" in (unconfigured(s) or "")
    assert "no metadata server" in (metadata_unconfigured(s) or "")


def test_mining_is_a_declared_choice(devnet: Path) -> None:
    assert load_settings({}, None, {}).mining == "detect"
    assert load_settings({"devnet_dir": str(devnet)}, None, {"CIC_MINING": "auto"}).mining == "auto"
    with pytest.raises(ConfigError, match="env CIC_MINING: mining must be one of explicit, "
                       "auto, detect, got 'sometimes'"):
        load_settings({}, None, {"CIC_MINING": "sometimes"})


def test_batch_funder_devnet_is_the_devnets_address(devnet: Path, tmp_path: Path) -> None:
    s = load_settings({"devnet_dir": str(devnet)}, None, {"CIC_BATCH_FUNDER": "devnet"})
    assert s.batch_funder == FUNDER
    assert s.source_of("batch_funder") == f"env CIC_BATCH_FUNDER 'devnet' -> devnet.json ({devnet})"
    assert resolve(s) is not None and resolve(s).lower() == FUNDER  # type: ignore[union-attr]
    without = make_devnet(tmp_path / "old", contracts={})
    with pytest.raises(ConfigError, match=f"the devnet in {without} has no BatchFunder"):
        load_settings({"devnet_dir": str(without), "batch_funder": "devnet"}, None, {})
    no_devnet = load_settings({"batch_funder": "devnet"}, None, {})
    with pytest.raises(ConfigError, match="batch_funder 'devnet' needs a devnet"):
        resolve(no_devnet)


def test_replace_applies_the_devnet_again_below_the_new_flags(devnet: Path,
                                                              tmp_path: Path) -> None:
    plain = load_settings({}, None, {})
    s = plain.replace(devnet_dir=str(devnet), batch_funder="devnet")
    assert (s.rpc_url, s.batch_funder) == ("http://127.0.0.1:8545", FUNDER)
    assert s.source_of("rpc_url") == f"devnet.json ({devnet})"
    mine = str(tmp_path / "mine.json")
    t = s.replace(keyfile=mine)
    assert (t.keyfile, t.keyfile_password_file, t.batch_funder) == (mine, None, FUNDER)
    assert t.source_of("batch_funder") == s.source_of("batch_funder")
    other = make_devnet(tmp_path / "other", rpc_url="http://other:8545", contracts={})
    u = load_settings({"devnet_dir": str(devnet)}, None, {}).replace(devnet_dir=str(other),
                                                                       batch_funder="")
    assert (u.rpc_url, u.source_of("rpc_url")) == ("http://other:8545", f"devnet.json ({other})")
    # the file is read once: a replace without a new directory does not read it again
    (devnet / DEVNET_FILE).write_text("{}")
    assert s.replace(workers=2).rpc_url == "http://127.0.0.1:8545"
    # replace on settings loaded without the devnet: an ordinary flag
    v = load_settings({}, None, {"CIC_DEVNET_DIR": str(tmp_path / "none")}, devnet=False)
    assert v.replace(workers=3).rpc_url is None


@pytest.mark.parametrize(("content", "message"), [
    (None, "no devnet.json in {d}; start a devnet there with `cic-seed devnet up --dir {d}`"),
    ("{not json", "cannot read {d}/devnet.json: "),
    ('{"registry": "0x"}', "{d}/devnet.json is not a devnet file (no rpc_url)"),
    ("[1, 2]", "{d}/devnet.json is not a devnet file (no rpc_url)"),
])
def test_a_missing_or_broken_devnet_file_is_one_config_error(tmp_path: Path, content: str | None,
                                                             message: str) -> None:
    d = tmp_path / "net"
    d.mkdir()
    if content is not None:
        (d / DEVNET_FILE).write_text(content)
    with pytest.raises(ConfigError) as err:
        load_settings({"devnet_dir": str(d)}, None, {})
    assert str(err.value).startswith(message.format(d=d))
    assert "\n" not in str(err.value)
    # the commands that make a devnet do not read it
    assert load_settings({"devnet_dir": str(d)}, None, {}, devnet=False).rpc_url is None


def test_config_show_marks_the_devnet_values(cli: InCli, devnet: Path) -> None:
    proc = cli("config", "show", env={"CIC_DEVNET_DIR": str(devnet), "CIC_BATCH_FUNDER": "devnet",
                                      "CIC_META_TOKEN": "s3cret", "CIC_RPC_URL": "http://env"})
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()}
    mark = f"(devnet.json ({devnet}))"
    assert rows["registry_address"].split()[1:] == [REGISTRY, *mark.split()]
    assert rows["keyfile"].split()[1:] == [str(devnet / "deployer.json"), *mark.split()]
    assert rows["mining"].split()[1:] == ["explicit", *mark.split()]
    assert rows["ussd_db_url"].split()[1] == "postgresql://u:****@127.0.0.1/ussd"
    assert rows["rpc_url"].split()[1:] == ["http://env", "(env", "CIC_RPC_URL)"]
    assert rows["batch_funder"].split()[1] == FUNDER
    assert rows["batch_funder"].endswith(f"(env CIC_BATCH_FUNDER 'devnet' -> devnet.json "
                                         f"({devnet}))")
    assert rows["meta_token"].split()[1] == "****" and "s3cret" not in proc.stdout
    shown = {name: (value, source) for name, value, source in describe(
        load_settings({"devnet_dir": str(devnet)}, None, {}))}
    assert shown["custodial_queue"] == ("cic_custodial_x", f"devnet.json ({devnet})")


def test_a_broken_devnet_is_a_one_line_exit_2(cli: InCli, tmp_path: Path) -> None:
    proc = cli("config", "show", env={"CIC_DEVNET_DIR": str(tmp_path / "nowhere")})
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"error: no devnet.json in {tmp_path / 'nowhere'}; start a devnet there with "
        f"`cic-seed devnet up --dir {tmp_path / 'nowhere'}`"]
    # generate has no use for a devnet: one that does not exist yet is no error
    proc = cli("generate", "--dir", str(tmp_path / "d"), "--seed", "1", "-q", "2",
               env={"CIC_DEVNET_DIR": str(tmp_path / "nowhere")})
    assert proc.returncode == 0, proc.stderr
