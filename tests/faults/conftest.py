"""Fixtures of the fault folder: ``cli`` runs cic-seed in this process (bad-input and fuzz
tests); ``fault_report`` collects the kill -9 and restart counts (tests/faults/report.py);
``harness`` is a custodial engine of the test's own (tests/custodial/conftest.py); ``meta`` a
metadata server on SQLite for the module."""

from collections.abc import Iterator

import pytest

from cic_devnet.meta.process import MetaServerProcess, start_meta_server
from tests.custodial.conftest import harness, pg_schema  # noqa: F401  (fixtures)
from tests.faults.report import fault_report  # noqa: F401  (fixture: the fault report)
from tests.generate._incli import cli  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def meta(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetaServerProcess]:
    server = start_meta_server(db=str(tmp_path_factory.mktemp("meta") / "meta.db"))
    try:
        yield server
    finally:
        server.stop()
