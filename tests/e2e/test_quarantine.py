"""A bad row costs one user, on a real devnet: the BatchFunder import funds every user but the
one whose balances.csv row is bad."""

from __future__ import annotations

import csv
from pathlib import Path

from cic_devnet.devnet import Devnet
from cic_seeding.chain.connect import connect
from cic_seeding.chain.registry import ACCOUNTS_INDEX, TOKEN, CicNetwork
from cic_seeding.datadir import DataDir
from cic_seeding.generate.generator import GenerateOptions, generate
from cic_seeding.importers.eth import EthImporter
from cic_seeding.state import norm
from cic_seeding.sync.run import run_sync
from cic_seeding.sync.syncer import SyncOptions
from cic_seeding.units import dataset_to_token
from tests.conftest import devnet_settings
from tests.e2e.ledger import Holdings, assert_paid_exactly_once

USERS = 15


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def write_csv(path: Path, rows: list[list[str]]) -> None:
    path.write_text("".join(",".join(r) + "\n" for r in rows), encoding="utf-8")


def token_balances(network: CicNetwork, users: list[str]) -> dict[str, int]:
    token = network.token()
    held = network.client.call_many([(token.address, TOKEN.fn("balanceOf"), (u,))
                                     for u in users])
    return {norm(u): int(h) for u, h in zip(users, held, strict=True)}


def test_batch_funder_import_funds_all_but_the_user_with_a_bad_balance_row(
        devnet: Devnet, tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate(GenerateOptions(directory=data, count=USERS, seed=8181, workers=1))
    settings = devnet_settings(devnet, data, batch_funder="devnet")
    dd = DataDir(data)
    network = connect(settings)
    token = network.token()
    funder = devnet.info["contracts"]["BatchFunder"]
    signer = network.client.signer
    assert signer is not None
    assert network.client.call(token.address, TOKEN.fn("allowance"), signer.address,
                               funder) == 0
    before = Holdings.read(network)
    decimals = dd.manifest().decimals
    opening = {norm(a): dataset_to_token(v, decimals, token.decimals)
               for a, v in dd.read_balances().values.items()}
    rows = list(dd.users())
    users = [r.address for r in rows]
    funded = [r for r in rows[1:] if opening[norm(r.address)] > 0]
    poor, twin = funded[2].address, funded[5].address

    balances_text = dd.balances_csv.read_text()
    balances = read_csv(dd.balances_csv)
    (line,) = [n for n, r in enumerate(balances, 1) if norm(r[0]) == norm(poor)]
    balances[line - 1][1] = "12x"
    write_csv(dd.balances_csv, balances)
    users_text = dd.users_csv.read_text()
    listed = read_csv(dd.users_csv)
    for row in listed:  # a second user with user 0's phone: refused before anything is sent
        if row[1] == twin:
            row[2] = rows[0].phone
    write_csv(dd.users_csv, listed)

    importer = EthImporter(settings)
    try:
        result = importer.run()
    finally:
        importer.close()
    assert (result.confirmed, result.failed) == (USERS - 2, 2), result.render_text()
    why = {norm(a): reason for a, reason in result.failures}
    poor, twin = norm(poor), norm(twin)
    assert set(why) == {poor, twin}
    assert f"balances.csv line {line}, field amount: '12x' is not a whole number" in why[poor]
    assert "phones must be unique" in why[twin]
    have = network.client.call_many([(network.accounts_index, ACCOUNTS_INDEX.fn("have"), (u,))
                                     for u in users])
    assert {norm(u) for u, h in zip(users, have, strict=True) if not h} == {poor, twin}
    held = token_balances(network, users)
    paid = {norm(u): opening[norm(u)] for u in users if norm(u) not in (poor, twin)}
    assert held == {**paid, poor: 0, twin: 0}
    # the allowance was for exactly the users funded: none left, the signer paid just them
    assert network.client.call(token.address, TOKEN.fn("allowance"), signer.address,
                               funder) == 0
    assert before.signer - Holdings.read(network).signer == sum(paid.values())

    # fixed: a rerun imports and funds the two, the syncer pays the rest, all exactly once
    dd.balances_csv.write_text(balances_text)
    dd.users_csv.write_text(users_text)
    importer = EthImporter(settings)
    try:
        rerun = importer.run()
    finally:
        importer.close()
    assert (rerun.done_before, rerun.confirmed, rerun.failed) == (USERS - 2, 2, 0), \
        rerun.render_text()
    assert network.client.call(token.address, TOKEN.fn("allowance"), signer.address,
                               funder) == 0
    sync = run_sync(settings, "eth", SyncOptions(timeout=60, poll=0.05))
    assert sync.ok and sync.done == USERS, sync.render_text()
    assert_paid_exactly_once(settings, before)
