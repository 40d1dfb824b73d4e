"""The chain spec comes from where it is known: users generated for chain 31337 import and sync
onto a node of chain 31337 with no chain spec given (the manifest names it); a node of another
chain is refused at once by every command, in one line naming both chain ids; ``-i`` overrides.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cic_devnet.devnet import Devnet
from cic_seeding.generate.generator import GenerateOptions, generate
from tests.conftest import start_devnet
from tests.generate._incli import InCli, cli  # noqa: F401  (fixture)
from tests.helpers import the_error_line

SPEC = "evm:byzantium:31337:anvil"


@pytest.fixture(scope="module")
def devnet_31337(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    yield from start_devnet(tmp_path_factory.mktemp("devnet31337"), chain_spec=SPEC)


def make_data(root: Path) -> Path:
    directory = root / "data"
    generate(GenerateOptions(directory=directory, count=3, seed=31337, chain_spec=SPEC,
                             transactions=2, workers=1))
    return directory


def explicit(devnet: Devnet) -> tuple[list[str], dict[str, str]]:
    """``-p -r -y`` of ``devnet`` (no --devnet: its devnet.json names a chain spec too)."""
    return (["-p", devnet.rpc_url, "-r", devnet.registry, "-y",
             str(devnet.directory / "deployer.json")],
            {"CIC_KEYFILE_PASSWORD_FILE": str(devnet.directory / "deployer.pw")})


def test_the_manifest_names_the_chain(cli: InCli, devnet_31337: Devnet,  # noqa: F811
                                      tmp_path: Path) -> None:
    data = make_data(tmp_path)
    args, env = explicit(devnet_31337)
    run = cli("import", "eth", "--dir", str(data), *args, "-q", env=env)
    assert run.returncode == 0, run
    run = cli("sync", "eth", "--dir", str(data), *args, "--timeout", "60", "-q", env=env)
    assert run.returncode == 0, run
    run = cli("verify", str(data), *args[:4], "--skip-metadata", "--skip-ussd",
              "--skip-custodial", "-q")
    assert run.returncode == 0, run
    run = cli("doctor", "--dir", str(data), *args, env=env)
    assert run.returncode == 0, run
    assert f"ok   chain id: 31337 matches {SPEC} (from manifest.json ({data}))" in run.stdout


def test_another_chain_is_one_line_naming_both_ids(cli: InCli, module_devnet: Devnet,  # noqa: F811
                                                   tmp_path: Path) -> None:
    data = make_data(tmp_path)
    args, env = explicit(module_devnet)  # chain 8996
    line = (f"error: the node at {module_devnet.rpc_url} has chain id 8996, but the chain spec "
            f"{SPEC} (from manifest.json ({data})) says 31337; point --devnet / -p at the chain "
            "the spec names, or name the node's chain with -i / --chain-spec (CIC_CHAIN_SPEC)")
    for command in (["import", "eth", "--dir", str(data), *args],
                    ["sync", "eth", "--dir", str(data), *args, "--timeout", "60"],
                    ["verify", str(data), *args[:4], "--skip-metadata", "--skip-ussd",
                     "--skip-custodial"],
                    ["traffic", str(data), *args]):
        started = time.monotonic()
        run = cli(*command, env=env)
        assert (run.returncode, the_error_line(run.stderr)) == (2, line), (command, run)
        assert time.monotonic() - started < 10, command  # at once: sync waits for nothing
    run = cli("doctor", "--dir", str(data), *args, env=env)
    assert run.returncode == 1
    assert f"FAIL chain id: {line.removeprefix('error: ')}" in run.stdout.splitlines()


def test_i_overrides_the_manifest(cli: InCli, module_devnet: Devnet,  # noqa: F811
                                  tmp_path: Path) -> None:
    data = make_data(tmp_path)
    args, env = explicit(module_devnet)
    given = ["-i", "evm:byzantium:8996:bloxberg"]
    run = cli("import", "eth", "--dir", str(data), *args, *given, "-q", env=env)
    assert run.returncode == 0, run
    run = cli("sync", "eth", "--dir", str(data), *args, *given, "--timeout", "60", "-q",
              env=env)
    assert run.returncode == 0, run
    run = cli("doctor", "--dir", str(data), *args, "--chain-spec", "evm:byzantium:8996:x",
              env=env)
    assert "ok   chain id: 8996 matches evm:byzantium:8996:x (from flag)" in run.stdout, run
