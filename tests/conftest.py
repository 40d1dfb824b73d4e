"""Fixtures shared by the integration tests: a real devnet (anvil + CIC contracts), fresh
PostgreSQL schemas, a metadata server and the USSD stack (gateway, engine, metadata server).

Every devnet runs on a free port in the test's temporary directory and is stopped by pid
afterwards, so any number can run at once; every schema is one nobody used, dropped after.
At session start PostgreSQL and Redis are started when they do not answer, and the test
database is created when missing (tests/services.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cic_devnet.devnet import Devnet, devnet_up
from cic_devnet.meta.process import MetaServerProcess, start_meta_server
from cic_seeding.config import Settings, load_settings
from tests.pg import fresh_schema
from tests.services import ensure_services

if TYPE_CHECKING:
    from tests.ussd.world import Stack


def pytest_sessionstart(session: pytest.Session) -> None:
    """The services every PostgreSQL or Redis test needs, up before the first test."""
    capture = session.config.pluginmanager.getplugin("capturemanager")
    with (capture.global_and_fixture_disabled() if capture is not None
          else contextlib.nullcontext()):
        ensure_services()


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CIC_* variable of the host leaks into a test, nor an older data-seeding name."""
    import os

    from cic_seeding.config import LEGACY_PREFIX_ENV, legacy_names

    older = {*legacy_names(), LEGACY_PREFIX_ENV}
    for name in list(os.environ):
        if (name.startswith("CIC_") and name != "CIC_TEST_PG_URL") or name in older:
            monkeypatch.delenv(name)


def start_devnet(directory: Path, **kw: object) -> Iterator[Devnet]:
    devnet = devnet_up(directory, **kw)  # type: ignore[arg-type]
    try:
        yield devnet
    finally:
        devnet.stop()


@pytest.fixture
def devnet(tmp_path: Path) -> Iterator[Devnet]:
    """A fresh devnet for one test."""
    yield from start_devnet(tmp_path / "devnet")


@pytest.fixture(scope="module")
def module_devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    """One devnet shared by a module's tests (they must not depend on each other's users)."""
    yield from start_devnet(tmp_path_factory.mktemp("devnet"))


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema name for one test, dropped after it (tests/pg.py)."""
    with fresh_schema() as name:
        yield name


@pytest.fixture(scope="module")
def module_pg_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema name shared by a module's tests, dropped after them."""
    with fresh_schema() as name:
        yield name


@pytest.fixture(scope="module")
def meta(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetaServerProcess]:
    """A metadata server on SQLite shared by a module's tests (they use distinct pointers)."""
    server = start_meta_server(db=str(tmp_path_factory.mktemp("meta") / "meta.db"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def stack(module_devnet: Devnet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The USSD gateway with its custodial engine and metadata server on the module's devnet
    (tests/ussd/world.py), shared by a module's tests (they use distinct phones)."""
    from tests.ussd.world import Stack

    with Stack.running(module_devnet, tmp_path_factory.mktemp("ussd")) as s:
        yield s


def devnet_settings(devnet: Devnet, data_dir: Path, **flags: object) -> Settings:
    """Settings for a data directory seeded onto ``devnet`` (no config file, no env)."""
    return load_settings({"devnet_dir": str(devnet.directory), "data_dir": str(data_dir),
                          **flags}, config_file=None, environ={})
