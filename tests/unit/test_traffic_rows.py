"""transactions.csv read row by row for ``cic-seed traffic``: every bad row is named with its
line, field and what is wrong, and the good rows around it are kept under their own place."""

from __future__ import annotations

from pathlib import Path

from cic_seeding.datadir import DataDir
from cic_seeding.generate.generator import GenerateOptions, generate
from cic_seeding.state import norm
from cic_seeding.traffic import read_transfers

STRANGER = "0x" + "ab" * 20


def test_each_bad_row_is_named_and_the_good_rows_keep_their_place(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "data")
    generate(GenerateOptions(directory=data.root, count=4, seed=91, transactions=3, workers=1))
    users = {norm(u.address) for u in data.users()}
    good = data.transactions_csv.read_text().splitlines()
    sender, recipient, _, _ = good[0].split(",")
    letter = next(i for i, c in enumerate(sender) if i > 1 and c.isalpha())
    flipped = sender[:letter] + sender[letter].swapcase() + sender[letter + 1:]  # a typo
    bad = {
        f"{sender},{recipient}": ("amount", "missing"),
        f"{sender},{recipient},5,1,x": ("offset", "expected 4 fields"),
        f"0x12,{recipient},5,1": ("sender", "'0x12' is not an address"),
        f"{flipped},{recipient},5,1": ("sender", "fails its EIP-55 checksum"),
        f"{sender},{STRANGER},5,1": ("recipient", f"{STRANGER} is not a user of {data.root}"),
        f"{sender},{recipient},12x,1": ("amount", "'12x' is not a positive whole number"),
        f"{sender},{recipient},000,1": ("amount", "'000' is not a positive whole number"),
        f"{sender},{recipient},-5,1": ("amount", "'-5' is not a positive whole number"),
        f"{sender},{recipient},{'9' * 90},1": ("amount", "is not below 2**256"),
        f"{sender},{recipient},5,soon": ("offset", "'soon' is not a whole number"),
    }
    lines = [good[0], "", *bad, good[1], f"{sender.lower()},{recipient},5,1", good[2]]
    data.transactions_csv.write_text("\n".join(lines) + "\n")

    rows, problems = read_transfers(data, users, 6, 6)

    first = 2  # row (from 0) of the first bad line: after a good row and a blank line
    assert sorted(problems) == list(range(first, first + len(bad)))
    for row, (field, words) in enumerate(bad.values(), first):
        problem = problems[row]
        assert (problem.line, problem.field) == (row + 1, field), problem
        assert words in problem.problem, problem
    after = first + len(bad)
    assert sorted(rows) == [0, after, after + 1, after + 2]
    assert rows[0] == (norm(sender), norm(recipient), int(good[0].split(",")[2]))
    assert rows[after + 1].sender == norm(sender)  # all lower case is no checksum to break
    assert str(problems[first + 5]) == (
        f"transactions.csv line {first + 6}, field amount: '12x' is not a positive whole "
        "number (digits 0-9, in the dataset's smallest unit)")


def test_amounts_are_scaled_to_the_token(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "data")
    generate(GenerateOptions(directory=data.root, count=2, seed=92, transactions=1, workers=1))
    users = {norm(u.address) for u in data.users()}
    sender, recipient, _, offset = data.transactions_csv.read_text().split(",")
    data.transactions_csv.write_text(f"{sender},{recipient},1234,{offset}")
    assert read_transfers(data, users, 2, 4)[0][0].amount == 123400
    assert read_transfers(data, users, 4, 2)[0][0].amount == 12
