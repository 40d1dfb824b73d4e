"""The older configuration (a config directory of ini files, SECTION_KEY environment names
behind CONFINI_ENV_PREFIX) mapped onto settings, each value named by its source; the data
directory positional and ``--dir`` on every command; the older options that no longer mean
anything, accepted and explained at -v. No service is needed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cic_seeding.cli.legacy import merged_flags
from cic_seeding.cli.main import main
from cic_seeding.config import load_settings
from tests.helpers import run_script, the_error_line

REGISTRY = "0x" + "ab" * 20


def older_config(directory: Path) -> Path:
    """A config directory as the older scripts shipped it (values of a docker-compose)."""
    directory.mkdir()
    files = {
        "rpc.ini": "[rpc]\nprovider = http://localhost:63545\n",
        "chain.ini": "[chain]\nspec = evm:byzantium:8996:bloxberg\nspec_source =\n",
        "cic.ini": f"[cic]\nregistry_address = {REGISTRY}\n",
        "token.ini": "[token]\nsymbol = GFT\n",
        "meta.ini": "[meta]\nprovider = http://localhost:63380\nhost = localhost\n"
                    "port = 63380\nssl = 0\n",
        "ussd.ini": "[ussd]\nmenu_file=data/ussd_menu.json\nservice_code=*483*46#,*483*061#\n"
                    "user =\npass =\nprovider = http://localhost:63315\n",
        "celery.ini": "[celery]\nbroker_url = redis://localhost:6379\n"
                      "result_url = redis://localhost:6379\nqueue = cic-eth\n",
        "redis.ini": "[redis]\nhost = localhost\nport = 6379\ndb = 0\n",
        "database.ini": "[database]\nname=cic_ussd\nuser=postgres\npassword=s3cret\n"
                        "host=localhost\nport=5432\nengine=postgresql\ndriver=psycopg2\n",
        "eth.ini": "[eth]\ngas_amount = 1000000000000000\n",
        "cache.ini": "[cache]\nprovider = http://localhost:63313\n",
        "pgp.ini": "[pgp]\nexports_dir = pgp\npassphrase = merman\n",
    }
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def test_an_older_config_directory_gives_the_settings(tmp_path: Path) -> None:
    cfg = older_config(tmp_path / "config")
    s = load_settings({}, cfg, {})
    got = {name: (getattr(s, name), s.source_of(name)) for name in (
        "rpc_url", "chain_spec", "registry_address", "token_symbol", "meta_url", "ussd_url",
        "ussd_service_code", "custodial_broker_url", "custodial_queue", "ussd_db_url",
        "gas_gift", "cache_provider")}
    assert got == {
        "rpc_url": ("http://localhost:63545", f"{cfg}/rpc.ini [rpc] provider"),
        "chain_spec": ("evm:byzantium:8996:bloxberg", f"{cfg}/chain.ini [chain] spec"),
        "registry_address": (REGISTRY, f"{cfg}/cic.ini [cic] registry_address"),
        "token_symbol": ("GFT", f"{cfg}/token.ini [token] symbol"),
        "meta_url": ("http://localhost:63380", f"{cfg}/meta.ini [meta] provider"),
        "ussd_url": ("http://localhost:63315", f"{cfg}/ussd.ini [ussd] provider"),
        "ussd_service_code": ("*483*46#", f"{cfg}/ussd.ini [ussd] service_code"),
        "custodial_broker_url": ("redis://localhost:6379",
                                 f"{cfg}/celery.ini [celery] broker_url"),
        "custodial_queue": ("cic-eth", f"{cfg}/celery.ini [celery] queue"),
        "ussd_db_url": ("postgresql://postgres:s3cret@localhost:5432/cic_ussd",
                        f"{cfg}/database.ini [database] host, port, name, user, password, "
                        "engine"),
        "gas_gift": (10**15, f"{cfg}/eth.ini [eth] gas_amount"),
        "cache_provider": ("http://localhost:63313", f"{cfg}/cache.ini [cache] provider"),
    }
    notes = "\n".join(s.notes)
    assert "CHAIN_SPEC_SOURCE" not in notes  # empty: no value, as the older scripts read it
    assert f"PGP_EXPORTS_DIR ({cfg}/pgp.ini [pgp] exports_dir)" in notes
    assert f"DATABASE_DRIVER ({cfg}/database.ini [database] driver)" in notes
    assert "USSD_MENU_FILE" in notes
    assert "s3cret" not in notes


def test_precedence_flag_env_older_env_file_devnet_default(tmp_path: Path) -> None:
    """flag > CIC_* env > older env name > the directory's cic-seed.toml > its ini files >
    devnet.json > default."""
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "rpc.ini").write_text("[rpc]\nprovider = http://ini\n")
    (cfg / "meta.ini").write_text("[meta]\nprovider = http://meta-ini\n")
    (cfg / "ussd.ini").write_text("[ussd]\nprovider = http://ussd-ini\n")
    (cfg / "cic-seed.toml").write_text('meta_url = "http://meta-toml"\n')
    devnet = tmp_path / "devnet"
    devnet.mkdir()
    (devnet / "devnet.json").write_text(json.dumps({
        "rpc_url": "http://devnet", "registry": REGISTRY, "chain_spec": "evm:x:1:y",
        "ussd": {"url": "http://ussd-devnet"}}))

    def rpc(flags: dict[str, str], env: dict[str, str]) -> tuple[str | None, str]:
        s = load_settings({"devnet_dir": str(devnet), **flags}, cfg, env)
        return s.rpc_url, s.source_of("rpc_url")

    assert rpc({}, {}) == ("http://ini", f"{cfg}/rpc.ini [rpc] provider")
    assert rpc({}, {"RPC_PROVIDER": "http://older"}) == ("http://older", "env RPC_PROVIDER")
    both = {"RPC_PROVIDER": "http://older", "CIC_RPC_URL": "http://cic"}
    assert rpc({}, both) == ("http://cic", "env CIC_RPC_URL")
    assert rpc({"rpc_url": "http://flag"}, both) == ("http://flag", "flag")
    s = load_settings({"devnet_dir": str(devnet)}, cfg, {})
    assert (s.meta_url, s.source_of("meta_url")) == ("http://meta-toml",
                                                     str(cfg / "cic-seed.toml"))
    assert s.ussd_url == "http://ussd-ini"  # a config file ranks above devnet.json
    assert (s.registry_address, s.source_of("registry_address")) == (
        REGISTRY, f"devnet.json ({devnet})")
    assert s.source_of("batch_size") == "default"


def test_confini_env_prefix(tmp_path: Path) -> None:
    env = {"CONFINI_ENV_PREFIX": "OLD", "OLD_RPC_PROVIDER": "http://prefixed",
           "RPC_PROVIDER": "http://bare", "OLD_CIC_REGISTRY_ADDRESS": REGISTRY,
           "OLD_REDIS_HOST": "redis-host", "OLD_REDIS_PORT": "7000"}
    s = load_settings({}, None, env)
    assert (s.rpc_url, s.source_of("rpc_url")) == ("http://prefixed", "env OLD_RPC_PROVIDER")
    assert (s.registry_address, s.source_of("registry_address")) == (
        REGISTRY, "env OLD_CIC_REGISTRY_ADDRESS")
    assert (s.custodial_broker_url, s.source_of("custodial_broker_url")) == (
        "redis://redis-host:7000/0", "env OLD_REDIS_HOST, OLD_REDIS_PORT")
    assert "settings from the older environment names: rpc_url (env OLD_RPC_PROVIDER), " \
        "registry_address (env OLD_CIC_REGISTRY_ADDRESS)" in s.notes[0]
    other = load_settings({}, None, env, env_prefix="NEW")  # --env-prefix
    assert other.rpc_url is None
    bare = load_settings({}, None, {"RPC_PROVIDER": "http://bare"})
    assert (bare.rpc_url, bare.source_of("rpc_url")) == ("http://bare", "env RPC_PROVIDER")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no config/cic-seed.toml of the checkout
    assert main(["generate", "--dir", "users", "--seed", "7", "--workers", "1", "-q",
                 "-i", "evm:byzantium:8996:bloxberg", "2"]) == 0
    return tmp_path / "users"


def test_config_show_names_every_source(data_dir: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    cfg = older_config(tmp_path / "config")
    devnet = tmp_path / "devnet"
    devnet.mkdir()
    (devnet / "devnet.json").write_text(json.dumps({"rpc_url": "http://devnet",
                                                    "mining": "explicit"}))
    monkeypatch.setenv("TOKEN_SYMBOL", "OLD")
    monkeypatch.setenv("CIC_BATCH_SIZE", "9")
    (cfg / "chain.ini").unlink()  # the manifest names the chain
    assert main(["config", "show", "users", "-c", "config", "--devnet", "devnet"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    sources = {name: row.rsplit("  (", 1)[1][:-1] for name, row in rows.items()}
    assert sources["data_dir"] == sources["devnet_dir"] == "flag"
    assert sources["batch_size"] == "env CIC_BATCH_SIZE"
    assert sources["token_symbol"] == "env TOKEN_SYMBOL"
    assert sources["rpc_url"] == "config/rpc.ini [rpc] provider"
    assert sources["mining"] == "devnet.json (devnet)"
    assert sources["chain_spec"] == "manifest.json (users)"
    assert sources["confirmations"] == "default"
    assert "s3cret" not in rows["ussd_db_url"] and "postgres:****@" in rows["ussd_db_url"]


def test_unused_older_keys_and_options_are_said_at_v_only(
        data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    older_config(tmp_path / "config")
    args = ["verify", "users", "-c", "config", "--skip-all", "--skip-cache",
            "--old-chain-spec", "evm:foo:1:oldchain"]
    assert main(args) == 0
    quiet = capsys.readouterr()
    assert "note:" not in quiet.err and quiet.out.splitlines()[-1] == "valid"
    assert main([*args, "-v"]) == 0
    told = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert told[0] == "note: --skip-cache is not needed: this toolkit has no cache check " \
                      "(see --cache-provider)"
    assert told[1].startswith("note: --old-chain-spec/--src-chain-spec is not needed: the "
                              "data directory's manifest names the chain")
    assert any("PGP_EXPORTS_DIR" in line for line in told)
    assert len(told) == len(set(told))


def test_the_data_directory_is_positional_and_dir_everywhere(
        data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["validate", "users"], ["validate", "--dir", "users"],
                 ["validate", "--userdir", "users"], ["verify", "users", "--skip-all"],
                 ["verify", "--dir", "users", "--skip-all"],
                 ["verify", "datadir", "users", "--skip-all"]):
        assert main(args) == 0, args
        assert capsys.readouterr().out.splitlines()[-1] == "valid"
    for args in (["validate", "users", "--dir", "other"],
                 ["verify", "users", "--dir", "other"], ["sync", "eth", "users", "--dir", "x"],
                 ["traffic", "users", "--dir", "x"], ["doctor", "users", "--dir", "x"],
                 ["import", "eth", "users", "--dir", "x"]):
        assert main(args) == 2, args
        assert the_error_line(capsys.readouterr().err).startswith(
            "error: two data directories given: users and --dir "), args


def test_sync_tells_an_importer_from_a_directory(
        data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["sync", "ethh", "--dir", "users"], ["sync", "ethh", "users"], ["sync", "ethh"]):
        assert main(args) == 2, args
        assert the_error_line(capsys.readouterr().err).startswith(
            "error: unknown importer 'ethh'; did you mean eth"), args
    assert main(["sync", "users"]) == 2  # DIR alone: nobody imported yet, so eth's users
    assert the_error_line(capsys.readouterr().err).startswith("error: no chain given")


def test_the_devnet_commands_take_devnet_and_their_old_dir(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "dn").mkdir()
    assert main(["devnet", "down", "--dir", str(tmp_path / "dn"), "-v"]) == 1
    err = capsys.readouterr().err
    assert "note: --dir still works: the devnet commands now spell their directory " \
           "--devnet DIR" in err
    assert the_error_line(err) == f"error: no devnet in {tmp_path / 'dn'} (no devnet.json)"
    assert main(["devnet", "down", "--devnet", str(tmp_path / "dn")]) == 1
    capsys.readouterr()
    assert main(["devnet", "down", "--devnet", "a", "--dir", "b"]) == 2
    assert the_error_line(capsys.readouterr().err).startswith(
        "error: two devnet directories given: --devnet a and --dir b")


def test_the_older_redis_options_name_one_broker(
        data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parts = {"legacy_redis": {"host": "redis", "port": 7000}}
    assert merged_flags(parts, {"data_dir": "users"}) == {
        "data_dir": "users", "custodial_broker_url": "redis://redis:7000/0"}
    assert main(["import", "cic_ussd", "users", "--ussd-provider", "http://a",
                 "--redis-port", "7000"]) == 2
    assert the_error_line(capsys.readouterr().err) == (
        "error: --redis-port/--redis-db need --redis-host; or give the broker whole: "
        "CIC_CUSTODIAL_BROKER_URL")


def test_create_import_pins_in_every_older_spelling(
        data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    older_config(tmp_path / "config")
    forms = {"users": ["users"], "pins-a": ["--userdir", "users", "pinsdir", "pins-a"],
             "pins-b": ["--userdir", "users", "pins-b"], "pins-c": ["--dir", "users", "pins-c"]}
    for where, args in forms.items():
        assert main(["pins", "-c", "config", "-v", *args, "--rounds", "4"]) == 0, args
        assert capsys.readouterr().out.strip() == f"{where}/pins.csv"
    phones = {}
    for where in forms:
        with (tmp_path / where / "pins.csv").open() as fh:
            phones[where] = [(r[0], r[1]) for r in csv.reader(fh)]
    assert len({tuple(v) for v in phones.values()}) == 1  # the same seeded PINs everywhere
    assert json.loads((tmp_path / "pins-a" / "pins.json").read_text())["data_dir"] == \
        str(data_dir.resolve())
    assert not (data_dir / "pins.json").exists()


def test_the_readme_typo_cic_ussd_ssed_is_the_ussd_import(tmp_path: Path) -> None:
    """The older README says `python cic_ussd/ssed.py ...`; copied as written it must run the
    USSD import, exactly as cic_ussd/seed.py does."""
    typo = run_script("cic_ussd/ssed.py", "--help", cwd=tmp_path)
    right = run_script("cic_ussd/seed.py", "--help", cwd=tmp_path)
    assert typo.returncode == right.returncode == 0, typo.stderr + right.stderr
    assert "--ussd-provider" in typo.stdout
    assert typo.stdout == right.stdout
