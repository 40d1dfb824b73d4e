"""The fault report: faults injected per importer, runs, users lost, double payments.

``fault_report`` (a session fixture, registered in this folder's conftest.py) collects one
:class:`~tests.faults.kills.Tally` per fault test. With ``CIC_FAULT_REPORT=PATH`` the session
writes them to PATH as JSON, for the README's published table.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.kills import FAULT_POINTS, FAULT_SEED, Tally

#: Read at import: the per-test isolation removes every CIC_* variable while a test runs.
REPORT_PATH = os.environ.get("CIC_FAULT_REPORT")


class FaultReport:
    def __init__(self) -> None:
        self.tallies: list[Tally] = []

    def tally(self, importer: str, fault: str = "kill -9") -> Tally:
        """A new tally for one test; fill it in before asserting, so failures are counted."""
        t = Tally(importer, fault)
        self.tallies.append(t)
        return t

    def to_dict(self) -> dict[str, Any]:
        command = [f"CIC_FAULT_POINTS={FAULT_POINTS}", f"CIC_TEST_FAULT_SEED={FAULT_SEED}",
                   "python", "-m", "pytest", *sys.argv[1:]]
        return {"seed": FAULT_SEED, "points_per_importer": FAULT_POINTS,
                "command": " ".join(command), "rows": [t.row() for t in self.tallies]}


@pytest.fixture(scope="session")
def fault_report() -> Iterator[FaultReport]:
    report = FaultReport()
    yield report
    if REPORT_PATH and report.tallies:
        path = Path(REPORT_PATH)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
