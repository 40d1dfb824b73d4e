"""A fake VerifyChain and a small seeded world: data directory, state store, chain answers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cic_seeding.config import Settings
from cic_seeding.datadir import DataDir, Manifest
from cic_seeding.generate.keys import user_address
from cic_seeding.state import open_state_store

SEED = 5
FAUCET = 3_000_000
TOKEN = "0x" + "Ab" * 20


@dataclass
class FakeChain:
    """Answers from dicts keyed by 0x lower-case address; counts calls and addresses asked."""

    registered: dict[str, bool] = field(default_factory=dict)
    balances: dict[str, int] = field(default_factory=dict)
    native: dict[str, int] = field(default_factory=dict)
    next_time: dict[str, int] = field(default_factory=dict)
    faucet: int = FAUCET
    token_address: str = TOKEN
    token_symbol: str = "GFT"
    token_decimals: int = 6
    calls: Counter[str] = field(default_factory=Counter)
    asked: Counter[str] = field(default_factory=Counter)

    def _answer(self, name: str, table: dict[str, int] | dict[str, bool],
                addresses: Sequence[str]) -> dict[str, int]:
        self.calls[name] += 1
        self.asked.update(f"{name}:{a}" for a in addresses)
        return {a: table.get(a, 0) for a in addresses}

    def have(self, addresses: Sequence[str]) -> dict[str, bool]:
        return {a: bool(v) for a, v in self._answer("have", self.registered, addresses).items()}

    def token_balances(self, addresses: Sequence[str]) -> dict[str, int]:
        return self._answer("token_balances", self.balances, addresses)

    def native_balances(self, addresses: Sequence[str]) -> dict[str, int]:
        return self._answer("native_balances", self.native, addresses)

    def faucet_next_time(self, addresses: Sequence[str]) -> dict[str, int]:
        return self._answer("faucet_next_time", self.next_time, addresses)

    def faucet_amount(self) -> int:
        self.calls["faucet_amount"] += 1
        return self.faucet


@dataclass
class World:
    settings: Settings
    addresses: list[str]  # 0x lower-case, index order
    opening: dict[str, int]
    chain: FakeChain

    @property
    def data(self) -> DataDir:
        return DataDir(self.settings.data_dir)


def make_world(tmp_path: Path, n: int = 20, *, decimals: int = 6, token_decimals: int = 6,
               imported: int | None = None, faucet: int = FAUCET) -> World:
    """``n`` users (the first ``imported`` of them imported by ``eth``) that a correct seeding
    would leave on chain: registered, opening balance + faucet, some gas, faucet used."""
    root = tmp_path / "data"
    root.mkdir()
    addresses = [user_address(SEED, i).lower() for i in range(n)]
    opening = {a: (i + 1) * 10**decimals + i for i, a in enumerate(addresses)}
    _write_datadir(root, addresses, opening, decimals)
    settings = Settings().replace(data_dir=str(root), workers=1)
    with open_state_store(settings) as store:
        store.add_users("eth", enumerate(addresses))
        store.mark_confirmed("eth", [(a, a) for a in addresses[:imported]])
    scale = 10 ** (token_decimals - decimals)
    chain = FakeChain(
        registered={a: True for a in addresses},
        balances={a: opening[a] * scale + faucet for a in addresses},
        native={a: 10**16 for a in addresses},
        next_time={a: 1_700_000_000 for a in addresses} if faucet else {},
        faucet=faucet, token_decimals=token_decimals)
    return World(settings, addresses, opening, chain)


def _write_datadir(root: Path, addresses: list[str], opening: dict[str, int],
                   decimals: int) -> None:
    manifest = Manifest(tool_version="test", seed=SEED, count=len(addresses), decimals=decimals,
                        chain_spec="evm:byzantium:8996:bloxberg", tags=["individual"],
                        gift_threshold=100, locale="en_KE", epoch=1_700_000_000)
    (root / "manifest.json").write_bytes(manifest.dumps())
    (root / "users.csv").write_text("".join(
        f"{i},{user_address(SEED, i)},+2547000000{i:02d}\n" for i in range(len(addresses))))
    (root / "balances.csv").write_text("".join(
        f"{a.removeprefix('0x')},{opening[a]}\n" for a in addresses))
