"""Fixtures shared by the integration tests: a real devnet (anvil + CIC contracts).

Every devnet runs on a free port in the test's temporary directory and is stopped by pid
afterwards, so any number can run at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cic_devnet.devnet import Devnet, devnet_up
from cic_seeding.config import Settings, load_settings


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CIC_* variable of the host leaks into a test."""
    import os

    for name in list(os.environ):
        if name.startswith("CIC_") and name != "CIC_TEST_PG_URL":
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


def devnet_settings(devnet: Devnet, data_dir: Path, **flags: object) -> Settings:
    """Settings for a data directory seeded onto ``devnet`` (no config file, no env)."""
    return load_settings({"devnet_dir": str(devnet.directory), "data_dir": str(data_dir),
                          **flags}, config_file=None, environ={})
