"""``cic-seed devnet up --ussd``: the gateway with its metadata server and engine; ``down``
stops them all."""

from __future__ import annotations

import json
from pathlib import Path

from cic_seeding.ussd.client import UssdClient
from cic_seeding.ussd.texts import text
from tests.custodial.world import REDIS_URL, purge_queue
from tests.helpers import run_cli
from tests.pg import PG_URL, fresh_schema


def _running(pid: int, marker: bytes) -> bool:
    path = Path(f"/proc/{pid}/cmdline")
    return path.exists() and marker in path.read_bytes()


def test_devnet_up_ussd_and_down(tmp_path: Path) -> None:
    with fresh_schema("cust") as cust, fresh_schema("ussd") as ussd:
        _up_and_down(tmp_path, cust, ussd)


def _up_and_down(tmp_path: Path, cust_schema: str, ussd_schema: str) -> None:
    env = {"CIC_CUSTODIAL_DB_URL": PG_URL, "CIC_CUSTODIAL_DB_SCHEMA": cust_schema,
           "CIC_CUSTODIAL_QUEUE": f"test_{ussd_schema}", "CIC_USSD_DB_URL": PG_URL,
           "CIC_USSD_DB_SCHEMA": ussd_schema}
    directory = tmp_path / "dn"
    up = run_cli("devnet", "up", "--dir", str(directory), "--ussd", env=env)
    info = json.loads((directory / "devnet.json").read_text()) if up.returncode == 0 else {}
    try:
        assert up.returncode == 0, up.stderr
        assert "USSD gateway: http://127.0.0.1:" in up.stderr
        gateway = info["ussd"]
        assert gateway["schema"] == ussd_schema and info["meta"]["url"]
        assert info["custodial"]["workers"]
        with UssdClient(gateway["url"], gateway["service_code"]) as client:
            assert client.session("+254712000001", [])[0].text == text("choose_language")
    finally:
        down = run_cli("devnet", "down", "--dir", str(directory))
        purge_queue(REDIS_URL, env["CIC_CUSTODIAL_QUEUE"])
    assert down.returncode == 0, down.stderr
    assert not _running(int(gateway["pid"]), b"cic_devnet.ussd")
    assert not _running(int(info["meta"]["pid"]), b"cic_devnet.meta")
