"""Where the chain spec comes from: a user's flag, environment variable or config file, else the
data directory's manifest (what the users were generated for), else the devnet file, else the
default."""

from __future__ import annotations

from pathlib import Path

import pytest

from cic_seeding.config import load_settings
from cic_seeding.datadir import dataset_settings
from cic_seeding.generate.generator import GenerateOptions, generate
from tests.generate._incli import InCli, cli  # noqa: F401  (fixture)
from tests.unit.test_config_devnet import make_devnet

DATASET = "evm:byzantium:31337:anvil"  # the manifest's
DEVNET = "evm:byzantium:4242:devnet"  # the devnet file's (tests.unit.test_config_devnet)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("spec") / "data"
    generate(GenerateOptions(directory=directory, count=2, seed=7, chain_spec=DATASET,
                             workers=1))
    return directory


def test_the_manifest_ranks_above_the_devnet_file_and_the_default(data: Path,
                                                                   tmp_path: Path) -> None:
    devnet = make_devnet(tmp_path / "net")
    for flags in ({"data_dir": str(data)}, {"data_dir": str(data), "devnet_dir": str(devnet)}):
        s = dataset_settings(load_settings(flags, None, {}))
        assert (s.chain_spec, s.source_of("chain_spec")) == (DATASET, f"manifest.json ({data})")
    # a devnet given later (replace) does not push the manifest's fact aside either
    s = dataset_settings(load_settings({"data_dir": str(data)}, None, {}))
    assert s.replace(devnet_dir=str(devnet)).chain_spec == DATASET


def test_a_user_setting_ranks_above_the_manifest(data: Path, tmp_path: Path) -> None:
    given = "evm:byzantium:1:mine"
    config = tmp_path / "c.toml"
    config.write_text(f'chain_spec = "{given}"\n')
    for flags, conf, env, source in (
            ({"chain_spec": given}, None, {}, "flag"),
            ({}, None, {"CIC_CHAIN_SPEC": given}, "env CIC_CHAIN_SPEC"),
            ({}, config, {}, str(config))):
        s = dataset_settings(load_settings({"data_dir": str(data), **flags}, conf, env))
        assert (s.chain_spec, s.source_of("chain_spec")) == (given, source)


def test_without_a_manifest_the_devnet_file_and_then_the_default_count(tmp_path: Path) -> None:
    devnet = make_devnet(tmp_path / "net")
    empty = str(tmp_path / "no-data")
    s = dataset_settings(load_settings({"data_dir": empty, "devnet_dir": str(devnet)}, None, {}))
    assert (s.chain_spec, s.source_of("chain_spec")) == (DEVNET, f"devnet.json ({devnet})")
    s = dataset_settings(load_settings({"data_dir": empty}, None, {}))
    assert s.source_of("chain_spec") == "default"
    assert dataset_settings(dataset_settings(s)) == s


def test_config_show_names_the_manifest(cli: InCli, data: Path) -> None:  # noqa: F811
    run = cli("config", "show", env={"CIC_DATA_DIR": str(data)})
    assert run.returncode == 0, run
    (line,) = [x for x in run.stdout.splitlines() if x.startswith("chain_spec ")]
    assert DATASET in line and line.endswith(f"(manifest.json ({data}))"), line
