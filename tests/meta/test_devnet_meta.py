"""`devnet up --meta`: the metadata server runs with the devnet, and importers find it there."""

from __future__ import annotations

import json
import os
from pathlib import Path

from cic_devnet.devnet import devnet_up
from cic_seeding.datadir import DataDir
from cic_seeding.importers.eth import EthImporter
from cic_seeding.importers.meta import MetaImporter, meta_client
from cic_seeding.meta.audit import audit
from cic_seeding.meta.documents import DocumentSource
from tests.conftest import devnet_settings
from tests.e2e.test_eth_pipeline import seed_users
from tests.helpers import run_cli


def test_devnet_with_meta_serves_the_cic_meta_importer(tmp_path: Path) -> None:
    devnet = devnet_up(tmp_path / "dn", meta=True)
    try:
        meta = devnet.info["meta"]
        assert meta["url"].startswith("http://127.0.0.1:")
        token_file = tmp_path / "dn" / meta["token_file"]
        assert token_file.stat().st_mode & 0o777 == 0o600
        assert token_file.read_text() not in (tmp_path / "dn" / "devnet.json").read_text()

        settings = seed_users(devnet, tmp_path, 20, seed=2020)
        for cls in (EthImporter, MetaImporter):  # no meta_url given: devnet.json has it
            importer = cls(settings)
            try:
                assert importer.run().ok
            finally:
                importer.close()
        data = DataDir(settings.data_dir)
        with meta_client(devnet_settings(devnet, settings.data_dir)) as client:
            report = audit(client, DocumentSource(data), list(data.users()))
        assert {k: (r.checked, r.failed) for k, r in report.items()} == {
            k: (20, 0) for k in report}, report
    finally:
        devnet.stop()
    assert not os.path.exists(f"/proc/{meta['pid']}") or \
        b"cic_devnet.meta" not in Path(f"/proc/{meta['pid']}/cmdline").read_bytes()


def test_devnet_cli_up_meta_custodial_doctor_and_down(tmp_path: Path) -> None:
    up = run_cli("devnet", "up", "--dir", str(tmp_path / "dn"), "--meta", "--custodial")
    info = json.loads((tmp_path / "dn" / "devnet.json").read_text()) if up.returncode == 0 else {}
    try:
        assert up.returncode == 0, up.stderr
        assert "metadata server: http://127.0.0.1:" in up.stderr
        doctor = run_cli("doctor", "--devnet", str(tmp_path / "dn"))
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "ok   metadata server" in doctor.stdout, doctor.stdout
        assert "ok   custodial engine" in doctor.stdout, doctor.stdout
    finally:
        down = run_cli("devnet", "down", "--dir", str(tmp_path / "dn"))
    assert down.returncode == 0
    for pid in (info["anvil"]["pid"], info["meta"]["pid"]):
        assert not os.path.exists(f"/proc/{pid}/cmdline") or \
            not Path(f"/proc/{pid}/cmdline").read_bytes()
