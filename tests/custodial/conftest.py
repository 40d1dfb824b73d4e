"""Fixtures: the custodial engine against the real PostgreSQL, Redis and anvil.

Every engine gets its own PostgreSQL schema (``pg_schema`` of tests/conftest.py, dropped after)
and its own Celery queue and reply channels on Redis, so these tests run beside any others;
every process started here is stopped by pid afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cic_devnet.devnet import Devnet
from tests.custodial.world import Harness


@pytest.fixture
def harness(devnet: Devnet, tmp_path: Path, pg_schema: str) -> Iterator[Harness]:
    """An engine prepared on a fresh devnet (no worker started yet: ``harness.start()``)."""
    h = Harness.prepare(devnet, tmp_path, pg_schema)
    try:
        yield h
    finally:
        h.stop()


@pytest.fixture(scope="module")
def module_harness(module_devnet: Devnet, tmp_path_factory: pytest.TempPathFactory,
                   module_pg_schema: str) -> Iterator[Harness]:
    """One prepared engine on the module's devnet, for tests of the plain functions."""
    h = Harness.prepare(module_devnet, tmp_path_factory.mktemp("engine"), module_pg_schema)
    try:
        yield h
    finally:
        h.stop()

