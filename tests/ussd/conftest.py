"""Fixtures: the USSD gateway with its custodial engine and metadata server (real processes)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cic_devnet.devnet import Devnet
from tests.ussd.world import Stack


@pytest.fixture(scope="module")
def stack(module_devnet: Devnet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack.running(module_devnet, tmp_path_factory.mktemp("ussd")) as s:
        yield s
