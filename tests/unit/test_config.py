from __future__ import annotations

from pathlib import Path

import pytest

from cic_seeding.config import describe, load_settings
from cic_seeding.errors import ConfigError
from tests.helpers import run_cli


def test_precedence_flag_env_file_default(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('batch_size = 7\nrpc_url = "http://file"\ndata_dir = "from-file"\n')
    env = {"CIC_RPC_URL": "http://env", "CIC_DATA_DIR": "from-env"}
    s = load_settings({"data_dir": "from-flag"}, cfg, env)
    assert (s.data_dir, s.source_of("data_dir")) == ("from-flag", "flag")
    assert (s.rpc_url, s.source_of("rpc_url")) == ("http://env", "env CIC_RPC_URL")
    assert (s.batch_size, s.source_of("batch_size")) == (7, str(cfg))
    assert (s.workers, s.source_of("workers")) == (0, "default")


def test_unknown_config_key_suggests(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("batch_sise = 3\n")
    with pytest.raises(ConfigError, match="unknown key 'batch_sise'.*did you mean batch_size"):
        load_settings({}, cfg, {})


def test_env_of_wrong_type() -> None:
    with pytest.raises(ConfigError, match="env CIC_BATCH_SIZE: batch_size must be an integer"):
        load_settings({}, None, {"CIC_BATCH_SIZE": "many"})


def test_secrets_masked_in_show(tmp_path: Path) -> None:
    s = load_settings({}, None, {"CIC_KEYFILE_PASSWORD": "hunter2"})
    shown = dict((n, v) for n, v, _ in describe(s))
    assert shown["keyfile_password"] == "****"
    proc = run_cli("config", "show", env={"CIC_KEYFILE_PASSWORD": "hunter2", "CIC_CONFIG": ""},
                   cwd=tmp_path)
    assert proc.returncode == 0
    assert "hunter2" not in proc.stdout + proc.stderr
    assert "keyfile_password" in proc.stdout and "(env CIC_KEYFILE_PASSWORD)" in proc.stdout


def test_bad_config_file_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("this is = not toml =\n")
    proc = run_cli("--config", str(cfg), "config", "show")
    assert proc.returncode == 2 and proc.stderr.startswith("error: config file")


def test_readme_documents_every_environment_variable() -> None:
    import subprocess
    import sys

    from tests.helpers import ROOT

    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_env.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
