"""A bad row costs one row or one user, on a real devnet: ``cic-seed traffic`` replays every
transactions.csv row but the malformed ones (and exits 1 naming them), and the BatchFunder
import funds every user but the one whose balances.csv row is bad."""

from __future__ import annotations

import csv
from collections import Counter
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
from cic_seeding.traffic import replay_traffic
from cic_seeding.units import dataset_to_token
from tests.conftest import devnet_settings
from tests.e2e.ledger import Holdings, assert_paid_exactly_once
from tests.helpers import run_cli

USERS, TRANSFERS = 15, 40
STRANGER = "0x" + "ab" * 20  # an address that is no user of the data directory


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


def replayed(rows: list[list[str]], start: dict[str, int], skip: set[int]
             ) -> tuple[dict[str, int], set[int]]:
    """Balances after the rows but ``skip`` (amounts as written: the devnet token has the
    dataset's decimals), and the rows that would overdraw their sender."""
    held, over = dict(start), set()
    for i, (sender, recipient, amount, _) in enumerate(rows):
        s, r, n = norm(sender), norm(recipient), int(amount)
        if i in skip:
            continue
        if held[s] < n:
            over.add(i)
            continue
        held[s] -= n
        held[r] += n
    return held, over


def droppable(rows: list[list[str]], start: dict[str, int], count: int) -> list[int]:
    """``count`` rows (from the middle on) without which no other row overdraws its sender:
    made bad, they cost themselves alone."""
    chosen: list[int] = []
    for i in range(len(rows) // 4, len(rows)):
        if not replayed(rows, start, {*chosen, i})[1]:
            chosen.append(i)
        if len(chosen) == count:
            return chosen
    raise AssertionError("no rows to drop: choose another seed")


def test_traffic_replays_all_but_the_bad_rows_and_a_fixed_row_on_rerun(
        module_devnet: Devnet, tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate(GenerateOptions(directory=data, count=USERS, seed=8080, transactions=TRANSFERS,
                             workers=1))
    # one more user, in no transfer, whose opening balance cannot be read: it is not imported
    generate(GenerateOptions(directory=data, count=1, mode="append", workers=1))
    dd = DataDir(data)
    users = [u.address for u in dd.users()]
    outsider = users[-1]
    balances = read_csv(dd.balances_csv)
    for row in balances:
        if norm(row[0]) == norm(outsider):
            row[1] = "7x"
    write_csv(dd.balances_csv, balances)
    settings = devnet_settings(module_devnet, data)
    importer = EthImporter(settings)
    try:
        imported = importer.run()
    finally:
        importer.close()
    assert imported.confirmed == USERS
    assert [norm(a) for a, _ in imported.failures] == [norm(outsider)]
    sync = run_sync(settings, "eth", SyncOptions(timeout=60, poll=0.05))
    assert sync.done == USERS and sync.failed == 1, sync.render_text()

    network = connect(settings, signer=False)
    start = token_balances(network, users)
    first_block = network.client.head() + 1
    original = read_csv(dd.transactions_csv)
    assert len(original) == TRANSFERS
    amount, recipient, short, sender = droppable(original, start, 4)
    rows = [list(r) for r in original]
    rows[amount][2] = "12x"
    rows[recipient][1] = STRANGER
    rows[short] = rows[short][:2]
    rows[sender][0] = outsider
    write_csv(dd.transactions_csv, rows)

    run = run_cli("traffic", str(data), "--devnet", str(module_devnet.directory),
                  "--batch-size", "8")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    out = run.stdout
    good = TRANSFERS - 4
    assert f"{good}/{TRANSFERS} transfers done ({good} this run), 4 failed" in out, out
    assert "3 rows of transactions.csv cannot be read" in out, out
    named = {int(line.split()[2].rstrip(":")): line for line in out.splitlines()
             if line.startswith("  transactions.csv line ")}
    assert set(named) == {amount + 1, recipient + 1, short + 1, sender + 1}, out
    assert "field amount: '12x' is not a positive whole number" in named[amount + 1]
    assert f"field recipient: {STRANGER} is not a user of {data}" in named[recipient + 1]
    assert "field amount: missing" in named[short + 1]
    assert f"sender {norm(outsider)} is not registered in the AccountsIndex" \
        in named[sender + 1]

    # on chain: every other row, once, in order (no transfer of a bad row)
    expected, over = replayed(original, start, {amount, recipient, short, sender})
    assert not over
    assert token_balances(network, users) == expected
    token = network.token()
    logs = network.client.logs(token.address, TOKEN.topic("Transfer"), first_block,
                               network.client.head())
    moved = Counter((norm("0x" + e["topics"][1][-40:]), norm("0x" + e["topics"][2][-40:]),
                     int(e["data"], 16)) for e in logs)
    assert moved == Counter((norm(s), norm(r), int(n)) for i, (s, r, n, _)
                            in enumerate(original) if i not in {amount, recipient, short, sender})

    # the three unreadable rows fixed: a rerun replays them; the unregistered sender fails again
    fixed = [list(r) for r in original]
    fixed[sender][0] = outsider
    write_csv(dd.transactions_csv, fixed)
    again = replay_traffic(settings)
    assert (again.done_before, again.confirmed, again.failed) == (good, 3, 1), \
        again.render_text()
    assert [line for line, _ in again.failures] == [sender + 1]
    assert token_balances(network, users) == replayed(original, start, {sender})[0]
    # and nothing twice
    last = replay_traffic(settings)
    assert (last.done_before, last.confirmed, last.failed) == (TRANSFERS - 1, 0, 1)
    assert token_balances(network, users) == replayed(original, start, {sender})[0]


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
