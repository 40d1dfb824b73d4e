"""Fixtures of the fault folder: ``cli`` runs cic-seed in this process (bad-input and fuzz
tests); ``fault_report`` collects the kill -9 and restart counts (tests/faults/report.py);
``harness`` is a custodial engine of the test's own (tests/custodial/conftest.py). (``meta``, a
metadata server on SQLite for the module, is in tests/conftest.py.)"""

from tests.custodial.conftest import harness  # noqa: F401  (fixture)
from tests.faults.report import fault_report  # noqa: F401  (fixture: the fault report)
from tests.generate._incli import cli  # noqa: F401  (fixture)
