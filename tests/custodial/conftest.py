"""Fixtures: the custodial engine against the real PostgreSQL, Redis and anvil.

Every engine gets its own PostgreSQL schema (dropped after) and its own Celery queue and reply
channels on Redis, so these tests run beside any others; every process started here is
stopped by pid afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cic_devnet.devnet import Devnet
from tests.custodial.world import Harness, drop_schema


@pytest.fixture
def pg_schema() -> Iterator[str]:
    name = f"cust_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        drop_schema(name)


@pytest.fixture
def harness(devnet: Devnet, tmp_path: Path, pg_schema: str) -> Iterator[Harness]:
    """An engine prepared on a fresh devnet (no worker started yet: ``harness.start()``)."""
    h = Harness.prepare(devnet, tmp_path, pg_schema)
    try:
        yield h
    finally:
        h.stop()


@pytest.fixture(scope="module")
def module_harness(module_devnet: Devnet, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[Harness]:
    """One prepared engine on the module's devnet, for tests of the plain functions."""
    schema = f"cust_{uuid.uuid4().hex[:12]}"
    h = Harness.prepare(module_devnet, tmp_path_factory.mktemp("engine"), schema)
    try:
        yield h
    finally:
        h.stop()
        drop_schema(schema)

