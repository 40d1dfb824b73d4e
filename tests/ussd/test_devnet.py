"""``cic-seed devnet up --ussd``: the gateway with its metadata server and engine; ``down``
stops them all."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from cic_seeding.ussd.client import UssdClient
from cic_seeding.ussd.texts import text
from tests.custodial.world import PG_URL, REDIS_URL, drop_schema, purge_queue
from tests.helpers import run_cli


def _running(pid: int, marker: bytes) -> bool:
    path = Path(f"/proc/{pid}/cmdline")
    return path.exists() and marker in path.read_bytes()


def test_devnet_up_ussd_and_down(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:12]
    env = {"CIC_CUSTODIAL_DB_URL": PG_URL, "CIC_CUSTODIAL_DB_SCHEMA": f"cust_{tag}",
           "CIC_CUSTODIAL_QUEUE": f"test_{tag}", "CIC_USSD_DB_URL": PG_URL,
           "CIC_USSD_DB_SCHEMA": f"ussd_{tag}"}
    directory = tmp_path / "dn"
    up = run_cli("devnet", "up", "--dir", str(directory), "--ussd", env=env)
    info = json.loads((directory / "devnet.json").read_text()) if up.returncode == 0 else {}
    try:
        assert up.returncode == 0, up.stderr
        assert "USSD gateway: http://127.0.0.1:" in up.stderr
        gateway = info["ussd"]
        assert gateway["schema"] == f"ussd_{tag}" and info["meta"]["url"]
        assert info["custodial"]["workers"]
        with UssdClient(gateway["url"], gateway["service_code"]) as client:
            assert client.session("+254712000001", [])[0].text == text("choose_language")
    finally:
        down = run_cli("devnet", "down", "--dir", str(directory))
        purge_queue(REDIS_URL, env["CIC_CUSTODIAL_QUEUE"])
        drop_schema(f"cust_{tag}")
        drop_schema(f"ussd_{tag}")
    assert down.returncode == 0, down.stderr
    assert not _running(int(gateway["pid"]), b"cic_devnet.ussd")
    assert not _running(int(info["meta"]["pid"]), b"cic_devnet.meta")
