"""The devnet of MIGRATING.md's worked example, ``cic-seed devnet up --meta --custodial --ussd``,
shared by a module's tests, and the commands of the older README run as its users type them.

The devnet's engine and gateway use fresh PostgreSQL schemas and a queue of their own, dropped
and purged afterwards; ``cic-seed devnet down`` stops every process ``up`` started.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from cic_seeding.config import Settings, load_settings
from tests.custodial.world import REDIS_URL, purge_queue
from tests.helpers import ROOT, run_cli
from tests.pg import PG_URL, fresh_schema

#: Users per data directory: enough for batches of more than one, small enough to be quick.
USERS = 3


@dataclass(frozen=True)
class OldWorld:
    """A running devnet with every service, as the older README's placeholders name them."""

    devnet: Path
    info: Mapping[str, object]
    work: Path  # the working directory the commands run in (it holds ./config)
    engine_schema: str  # the custodial engine's PostgreSQL schema

    def _get(self, *keys: str) -> str:
        value: object = self.info
        for key in keys:
            assert isinstance(value, dict), keys
            value = value[key]
        return str(value)

    @property
    def eth_provider(self) -> str:
        return self._get("rpc_url")

    @property
    def registry(self) -> str:
        return self._get("registry")

    @property
    def chain_spec(self) -> str:
        return self._get("chain_spec")

    @property
    def key_file(self) -> str:
        return str(self.devnet / self._get("deployer", "keyfile"))

    @property
    def meta_url(self) -> str:
        return self._get("meta", "url")

    @property
    def meta_token_file(self) -> str:
        return str(self.devnet / self._get("meta", "token_file"))

    @property
    def ussd_endpoint(self) -> str:
        return self._get("ussd", "url")

    @property
    def ussd_service_code(self) -> str:
        return self._get("ussd", "service_code")

    @property
    def broker(self) -> str:
        return self._get("custodial", "broker_url")

    @property
    def queue(self) -> str:
        return self._get("custodial", "queue")

    def env(self, **extra: str) -> dict[str, str]:
        """What a user's shell has: the virtual environment first on PATH (``python``,
        ``python3``), this checkout importable, the signer's password in a file (the older
        keyfile had none; this toolkit never takes one on the command line)."""
        bin_dir = str(Path(sys.executable).parent)
        return {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                "PYTHONPATH": str(ROOT),
                "CIC_KEYFILE_PASSWORD_FILE": str(self.devnet / self._get("deployer",
                                                                         "password_file")),
                **extra}

    def older_env(self, prefix: str = "") -> dict[str, str]:
        """Every service named by the older scripts' environment names alone."""
        names = {"RPC_PROVIDER": self.eth_provider, "CIC_REGISTRY_ADDRESS": self.registry,
                 "CHAIN_SPEC": self.chain_spec, "TOKEN_SYMBOL": "GFT",
                 "META_PROVIDER": self.meta_url, "USSD_PROVIDER": self.ussd_endpoint,
                 "USSD_SERVICE_CODE": self.ussd_service_code,
                 "CELERY_BROKER_URL": self.broker, "CELERY_QUEUE": self.queue}
        if prefix:
            names = {f"{prefix}_{k}": v for k, v in names.items()}
            names["CONFINI_ENV_PREFIX"] = prefix
        return names

    def run(self, *argv: str, env: Mapping[str, str] | None = None, timeout: float = 300
            ) -> subprocess.CompletedProcess[str]:
        """``argv`` as typed in the working directory: ``python X.py ...``, ``X.py ...`` (run
        by its #! line) or ``node X.js ...``, the script found in this checkout."""
        args = list(argv)
        i = 1 if args[0] in ("python", "node") else 0
        args[i] = str(ROOT / args[i])
        if args[0] == "python":
            args[0] = sys.executable
        return subprocess.run(args, cwd=self.work, env={**os.environ, **self.env(),
                                                        **(env or {})},
                              capture_output=True, text=True, timeout=timeout)

    def popen(self, *argv: str, log: Path) -> subprocess.Popen[bytes]:
        """``argv`` (a script run by its #! line) in the background, output to ``log``."""
        with log.open("wb") as out:
            return subprocess.Popen([str(ROOT / argv[0]), *argv[1:]], cwd=self.work,
                                    env={**os.environ, **self.env()}, stdout=out,
                                    stderr=subprocess.STDOUT)

    def settings(self, data_dir: Path) -> Settings:
        """What ``--devnet DIR`` gives a command on ``data_dir`` (no config file, no env)."""
        return load_settings({"devnet_dir": str(self.devnet), "data_dir": str(data_dir)},
                             config_file=None, environ={})

    def cic_seed(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``cic-seed ARGS --devnet DIR``: the new form, from the devnet directory alone."""
        return run_cli(*args, "--devnet", str(self.devnet), cwd=self.work)

    def cli(self, *args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
        """``cic-seed ARGS`` with ``env`` and nothing else."""
        return run_cli(*args, cwd=self.work, env=dict(env))


def write_older_config(world: OldWorld, directory: Path) -> None:
    """A config directory in the older layout, naming the devnet's services as the older
    scripts' ini files did (and keys this toolkit has no use for, as they came)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "rpc.ini": f"[rpc]\nprovider = {world.eth_provider}\n",
        "chain.ini": f"[chain]\nspec = {world.chain_spec}\nspec_source =\n",
        "cic.ini": f"[cic]\nregistry_address = {world.registry}\n",
        "token.ini": "[token]\nsymbol = GFT\n",
        "meta.ini": f"[meta]\nprovider = {world.meta_url}\n",
        "ussd.ini": f"[ussd]\nprovider = {world.ussd_endpoint}\nservice_code = "
                    f"{world.ussd_service_code},*483*061#\nmenu_file=data/ussd_menu.json\n",
        "celery.ini": f"[celery]\nbroker_url = {world.broker}\nresult_url = {world.broker}\n"
                      f"queue = {world.queue}\n",
        "pgp.ini": "[pgp]\nexports_dir = pgp\npassphrase = merman\n",
    }
    for name, text in files.items():
        (directory / name).write_text(text)


@pytest.fixture(scope="module")
def old_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OldWorld]:
    """``cic-seed devnet up --meta --custodial --ussd`` (MIGRATING.md's worked example), its
    engine and gateway in fresh schemas; ``cic-seed devnet down`` afterwards."""
    root = tmp_path_factory.mktemp("old")
    devnet = root / "devnet"
    with fresh_schema("cust") as cust, fresh_schema("ussd") as ussd:
        queue = f"test_{ussd}"
        env = {"CIC_CUSTODIAL_DB_URL": PG_URL, "CIC_CUSTODIAL_DB_SCHEMA": cust,
               "CIC_CUSTODIAL_QUEUE": queue, "CIC_USSD_DB_URL": PG_URL,
               "CIC_USSD_DB_SCHEMA": ussd}
        up = run_cli("devnet", "up", "--devnet", str(devnet), "--meta", "--custodial", "--ussd",
                     env=env, cwd=root)
        try:
            assert up.returncode == 0, up.stderr
            work = root / "work"
            work.mkdir()
            world = OldWorld(devnet, json.loads((devnet / "devnet.json").read_text()), work,
                             cust)
            write_older_config(world, work / "config")
            yield world
        finally:
            if (devnet / "devnet.json").is_file():
                down = run_cli("devnet", "down", "--devnet", str(devnet))
                assert down.returncode == 0, down.stderr
            purge_queue(REDIS_URL, queue)
