"""Reading what a seeded data directory left on chain, for assertions (no verifier needed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cic_seeding.chain.connect import connect
from cic_seeding.chain.registry import ACCOUNTS_INDEX, FAUCET, TOKEN
from cic_seeding.config import Settings
from cic_seeding.datadir import DataDir


@dataclass
class Ledger:
    users: list[str]
    expected: dict[str, int]  # opening balance + faucet amount
    balances: dict[str, int]
    native: dict[str, int]
    registered: dict[str, bool]
    faucet_used: dict[str, bool]
    index_entries: int

    def wrong_balances(self) -> dict[str, tuple[int, int]]:
        return {u: (self.balances[u], self.expected[u]) for u in self.users
                if self.balances[u] != self.expected[u]}


def read_ledger(settings: Settings) -> Ledger:
    network = connect(settings, signer=False)
    client = network.client
    data = DataDir(Path(settings.data_dir))
    token = network.token(settings.token_symbol)
    amount = client.call(network.faucet, FAUCET.fn("tokenAmount"))
    users = [u.address for u in data.users()]
    opening = data.read_balances().values  # a malformed row: that user expects 0
    index = network.accounts_index
    bal = client.call_many([(token.address, TOKEN.fn("balanceOf"), (u,)) for u in users])
    have = client.call_many([(index, ACCOUNTS_INDEX.fn("have"), (u,)) for u in users])
    used = client.call_many([(network.faucet, FAUCET.fn("nextTime"), (u,)) for u in users])
    native = client.native_balances(users)
    return Ledger(
        users=users,
        expected={u: opening.get(u.lower()[2:], 0) + amount for u in users},
        balances=dict(zip(users, bal, strict=True)),
        native=dict(zip(users, native, strict=True)),
        registered=dict(zip(users, have, strict=True)),
        faucet_used={u: t != 0 for u, t in zip(users, used, strict=True)},
        index_entries=client.call(index, ACCOUNTS_INDEX.fn("entryCount")))
