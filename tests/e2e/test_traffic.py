"""`cic-seed traffic`: transactions.csv replayed in order, exactly once, on a real devnet."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from cic_devnet.devnet import Devnet
from cic_seeding.chain.client import ChainClient
from cic_seeding.config import Settings
from cic_seeding.datadir import DataDir
from cic_seeding.generate.generator import GenerateOptions, generate
from cic_seeding.importers.eth import EthImporter
from cic_seeding.sync.run import run_sync
from cic_seeding.sync.syncer import SyncOptions
from cic_seeding.traffic import replay_traffic
from tests.conftest import devnet_settings
from tests.e2e.chain_check import read_ledger
from tests.helpers import run_cli


def seeded(devnet: Devnet, tmp_path: Path, seed: int) -> Settings:
    data = tmp_path / "data"
    generate(GenerateOptions(directory=data, count=25, seed=seed, transactions=60))
    settings = devnet_settings(devnet, data)
    importer = EthImporter(settings)
    try:
        assert importer.run().ok
    finally:
        importer.close()
    assert run_sync(settings, "eth", SyncOptions(timeout=60, poll=0.05)).ok
    return settings


def expected_after_traffic(settings: Settings) -> dict[str, int]:
    before = read_ledger(settings).balances
    delta: Counter[str] = Counter()
    with DataDir(settings.data_dir).transactions_csv.open() as fh:
        for sender, recipient, amount, _ in csv.reader(fh):
            delta[sender] -= int(amount)
            delta[recipient] += int(amount)
    return {u: before[u] + delta[u] for u in before}


def test_traffic_replays_every_row_once(module_devnet: Devnet, tmp_path: Path) -> None:
    settings = seeded(module_devnet, tmp_path, seed=7070)
    expected = expected_after_traffic(settings)
    result = run_cli("traffic", str(settings.data_dir), "--devnet",
                     str(module_devnet.directory), "--batch-size", "16")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "60/60 transfers done (60 this run)" in result.stdout
    assert read_ledger(settings).balances == expected
    again = replay_traffic(settings)
    assert again.ok and again.confirmed == 0 and again.done_before == 60
    assert read_ledger(settings).balances == expected


def test_transfers_recorded_but_never_sent_are_sent_once(module_devnet: Devnet, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    settings = seeded(module_devnet, tmp_path, seed=7171).replace(batch_size=20)
    expected = expected_after_traffic(settings)
    real = ChainClient.broadcast
    calls = Counter[str]()

    def crash_on_second_batch(self: ChainClient, raws: list[str], **kwargs: Any
                              ) -> list[str | None]:
        calls["n"] += 1
        if calls["n"] == 2:  # recorded as submitted, then the process "dies"
            raise KeyboardInterrupt
        return real(self, raws, **kwargs)

    monkeypatch.setattr(ChainClient, "broadcast", crash_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        replay_traffic(settings)
    monkeypatch.setattr(ChainClient, "broadcast", real)
    result = replay_traffic(settings)
    assert result.ok, result.render_text()
    assert read_ledger(settings).balances == expected
