from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cic_seeding.config import describe, load_settings, settings_fields
from cic_seeding.errors import ConfigError
from tests.generate._incli import InCli
from tests.helpers import ROOT, run_cli

SECRETS = [f.name for f in settings_fields() if f.metadata["secret"]]


def test_the_three_named_secrets_are_declared_secret() -> None:
    assert {"keyfile_password", "keystore_password", "meta_token"} <= set(SECRETS)


def test_precedence_flag_env_file_default(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('batch_size = 7\nrpc_url = "http://file"\ndata_dir = "from-file"\n')
    env = {"CIC_RPC_URL": "http://env", "CIC_DATA_DIR": "from-env"}
    s = load_settings({"data_dir": "from-flag"}, cfg, env)
    assert (s.data_dir, s.source_of("data_dir")) == ("from-flag", "flag")
    assert (s.rpc_url, s.source_of("rpc_url")) == ("http://env", "env CIC_RPC_URL")
    assert (s.batch_size, s.source_of("batch_size")) == (7, str(cfg))
    assert (s.workers, s.source_of("workers")) == (0, "default")


def test_precedence_through_the_cli(cli: InCli, tmp_path: Path) -> None:
    """generate writes where --dir says, else $CIC_DATA_DIR, else the file, else ./out."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "file"}"\n')
    env = {"CIC_DATA_DIR": str(tmp_path / "env")}
    gen = ["generate", "--seed", "1", "-q", "2"]
    flag = ["generate", "--dir", str(tmp_path / "flag"), "--seed", "1", "-q", "2"]
    assert cli("--config", str(cfg), *flag, env=env).returncode == 0
    assert cli("--config", str(cfg), *gen, env=env).returncode == 0
    assert cli("--config", str(cfg), *gen).returncode == 0
    assert cli(*gen).returncode == 0
    for where in (tmp_path / "flag", tmp_path / "env", tmp_path / "file",
                  tmp_path / "cwd" / "out"):
        assert (where / "manifest.json").is_file(), where


def test_config_show_prints_every_value_with_its_source(cli: InCli, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('batch_size = 7\nrpc_url = "http://file:8545"\n'
                   'keystore_password = "file-secret-1"\n')
    env = {"CIC_RPC_URL": "http://env:8545", "CIC_KEYFILE_PASSWORD": "env-secret-2",
           "CIC_META_TOKEN": "env-secret-3", "CIC_WORKERS": "3"}
    env.update({f.metadata["env"]: f"env-secret-{f.name}" for f in settings_fields()
                if f.metadata["secret"] and f.metadata["env"] not in env
                and f.name != "keystore_password"})
    proc = cli("--config", str(cfg), "config", "show", env=env)
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()}
    assert set(rows) == {f.name for f in settings_fields()}  # every setting, once
    assert rows["batch_size"].split()[1:] == ["7", f"({cfg})"]
    assert rows["rpc_url"].split()[1:] == ["http://env:8545", "(env", "CIC_RPC_URL)"]
    assert rows["workers"].split()[1:] == ["3", "(env", "CIC_WORKERS)"]
    assert rows["confirmations"].split()[1:] == ["0", "(default)"]
    assert rows["keystore_password"].split()[1:] == ["****", f"({cfg})"]
    for name in SECRETS:
        assert rows[name].split()[1] == "****", rows[name]
    assert "secret" not in proc.stdout + proc.stderr


def test_config_show_masks_passwords_inside_urls(cli: InCli) -> None:
    proc = cli("config", "show", env={"CIC_STATE_URL": "postgresql://seed:pa55word@db:5432/cic"})
    assert proc.returncode == 0
    assert "pa55word" not in proc.stdout
    assert "postgresql://seed:****@db:5432/cic" in proc.stdout


def test_unknown_config_key_suggests(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("batch_sise = 3\n")
    with pytest.raises(ConfigError, match="unknown key 'batch_sise'.*did you mean batch_size"):
        load_settings({}, cfg, {})


def test_unknown_config_key_is_a_one_line_exit_2(cli: InCli, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("rpc_timout = 3\n")
    for args in (["config", "show"], ["generate", "--dir", str(tmp_path / "d"), "3"]):
        proc = cli("--config", str(cfg), *args)
        assert proc.returncode == 2
        assert proc.stderr.splitlines() == [
            f"error: config file {cfg}: unknown key 'rpc_timout'; did you mean rpc_timeout?"]
    assert not (tmp_path / "d").exists()


def test_env_of_wrong_type() -> None:
    with pytest.raises(ConfigError, match="env CIC_BATCH_SIZE: batch_size must be an integer"):
        load_settings({}, None, {"CIC_BATCH_SIZE": "many"})


def test_env_of_wrong_type_is_a_one_line_exit_2(cli: InCli, tmp_path: Path) -> None:
    proc = cli("generate", "--dir", str(tmp_path / "d"), "3", env={"CIC_WORKERS": "two"})
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: env CIC_WORKERS: workers must be an integer, got 'two'"]
    proc = cli("config", "show", env={"CIC_RPC_TIMEOUT": "soon"})
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: env CIC_RPC_TIMEOUT: rpc_timeout must be a number, got 'soon'"]


def test_secrets_masked_in_show(tmp_path: Path) -> None:
    s = load_settings({}, None, {"CIC_KEYFILE_PASSWORD": "hunter2"})
    shown = dict((n, v) for n, v, _ in describe(s))
    assert shown["keyfile_password"] == "****"
    proc = run_cli("config", "show", env={"CIC_KEYFILE_PASSWORD": "hunter2", "CIC_CONFIG": ""},
                   cwd=tmp_path)
    assert proc.returncode == 0
    assert "hunter2" not in proc.stdout + proc.stderr
    assert "keyfile_password" in proc.stdout and "(env CIC_KEYFILE_PASSWORD)" in proc.stdout


def test_bad_config_file_exits_2(cli: InCli, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("this is = not toml =\n")
    proc = cli("--config", str(cfg), "config", "show")
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: config file {cfg} is not")
    assert len(proc.stderr.splitlines()) == 1
    proc = cli("--config", str(tmp_path / "none.toml"), "config", "show")
    missing = tmp_path / "none.toml"
    assert proc.stderr.splitlines() == [f"error: config file {missing} does not exist"]


def test_readme_documents_every_environment_variable() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_env.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
