"""The README's main command, end to end, as a user runs it."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

from tests.helpers import run_cli


def test_demo_runs_the_whole_pipeline_and_cleans_up(tmp_path: Path) -> None:
    result = run_cli("demo", "--users", "40", "--dir", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "demo in" in out and ": OK" in out
    for line in ("accounts_index: 40/40", "balance: 40/40", "local_key: 40/40",
                 "metadata: 40/40", "metadata_phone: 40/40"):
        assert line in out, out
    report = tmp_path / "demo" / "report.html"
    HTMLParser().feed(report.read_text())
    info = json.loads((tmp_path / "demo" / "devnet" / "devnet.json").read_text())
    assert info["anvil"]["pid"] is None and info["meta"]["pid"] is None
    # a second run wipes and redoes its own directory; a foreign one is refused
    assert run_cli("demo", "--users", "5", "--no-meta", "--dir",
                   str(tmp_path / "demo")).returncode == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("keep me")
    refused = run_cli("demo", "--users", "5", "--dir", str(tmp_path / "mine"))
    assert refused.returncode == 2 and "was not made by `cic-seed demo`" in refused.stderr
    assert (tmp_path / "mine" / "precious.txt").read_text() == "keep me"
