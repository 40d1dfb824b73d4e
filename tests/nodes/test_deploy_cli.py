"""`cic-seed devnet deploy` onto a node of the user's own, the way the README shows it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import run_cli
from tests.nodes.nodes import _signer_files, chain_spec, running_node


def test_deploy_refuses_another_chain_and_a_used_directory_with_exit_2(tmp_path: Path) -> None:
    with running_node("anvil-automine", tmp_path / "node") as node:
        keyfile, password_file = _signer_files(node, tmp_path)
        env = {"CIC_KEYFILE_PASSWORD_FILE": str(password_file)}
        target = tmp_path / "deployment"
        chain = ["-p", node.url, "-y", str(keyfile), "--devnet", str(target)]

        other = run_cli("devnet", "deploy", *chain, "-i", "evm:byzantium:8996:bloxberg", env=env)
        assert other.returncode == 2, other.stderr
        assert "chain id 31337" in other.stderr and "8996" in other.stderr
        assert not (target / "devnet.json").exists()

        done = run_cli("devnet", "deploy", *chain, "-i", chain_spec(node), env=env)
        assert done.returncode == 0, done.stderr
        registry = done.stdout.strip().splitlines()[-1]
        assert json.loads((target / "devnet.json").read_text())["registry"] == registry

        again = run_cli("devnet", "deploy", *chain, "-i", chain_spec(node), env=env)
        assert again.returncode == 2, again.stderr
        assert "already names a deployment" in again.stderr
        assert json.loads((target / "devnet.json").read_text())["registry"] == registry
