"""Secrets never reach output: a whole sovereign run at -vv, every line grepped for them."""

from __future__ import annotations

import stat
from pathlib import Path

from cic_devnet.devnet import Devnet
from cic_seeding.generate.generator import GenerateOptions, generate
from tests.helpers import run_cli


def test_no_secret_in_any_output_line(devnet: Devnet, tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate(GenerateOptions(directory=data, count=12, seed=909))
    keystore_password = "ks-S3cret-pw-909"
    deployer_password = (devnet.directory / "deployer.pw").read_text()
    env = {"CIC_KEYSTORE_PASSWORD": keystore_password,
           "CIC_STATE_URL": "postgresql://postgres:pg-S3cret@127.0.0.1:5432/nowhere"}
    dn, dd = str(devnet.directory), str(data)
    outputs = [run_cli("config", "show", env=env)]
    env.pop("CIC_STATE_URL")
    outputs += [run_cli(*cmd, env=env) for cmd in (
        ("import", "eth", "--dir", dd, "--devnet", dn, "-vv"),
        ("sync", "eth", "--dir", dd, "--devnet", dn, "--timeout", "60", "-vv"),
        ("verify", dd, "--devnet", dn, "-vv"),
        ("doctor", "--devnet", dn, "-vv"))]
    assert [o.returncode for o in outputs] == [0, 0, 0, 0, 0], [o.stderr[-500:] for o in outputs]
    text = "\n".join(o.stdout + o.stderr for o in outputs)
    assert len(text.splitlines()) > 20  # -vv really logged
    for secret in (keystore_password, deployer_password, "pg-S3cret"):
        assert secret not in text
    keyfiles = list((data / "keystore").iterdir())
    assert keyfiles and {stat.S_IMODE(p.stat().st_mode) for p in keyfiles} == {0o600}
    # devnet.json: DB URLs; anvil.log: the dev accounts' private keys, the deployer's too
    for name in ("deployer.json", "deployer.pw", "devnet.json", "anvil.log"):
        assert stat.S_IMODE((devnet.directory / name).stat().st_mode) == 0o600
