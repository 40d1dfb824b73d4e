from __future__ import annotations

import json
from pathlib import Path

import pytest

from cic_seeding.datadir import DataDir, Manifest
from cic_seeding.errors import DataDirError, DataDirExistsError, UsageError
from cic_seeding.generate.generator import GenerateOptions, generate
from cic_seeding.generate.keys import address_of, derive_private_key
from cic_seeding.generate.validate import validate
from cic_seeding.records.chainspec import ChainSpec
from cic_seeding.records.person import identity_addresses, person_errors, phone_of
from cic_seeding.records.phone import kenyan_mobile
from tests.helpers import tree_digest


def opts(directory: Path, count: int = 600, **kw: object) -> GenerateOptions:
    return GenerateOptions(directory=directory, count=count, seed=kw.pop("seed", 42), **kw)  # type: ignore[arg-type]


def test_same_seed_gives_identical_tree_whatever_the_worker_count(tmp_path: Path) -> None:
    generate(opts(tmp_path / "a", workers=1, transactions=40))
    generate(opts(tmp_path / "b", workers=2, transactions=40))
    a, b = tree_digest(tmp_path / "a"), tree_digest(tmp_path / "b")
    assert len(a) == 2 * 600 + 5  # src + phone per user; manifest and 4 csv files
    assert a == b


def test_other_seed_gives_other_users(tmp_path: Path) -> None:
    generate(opts(tmp_path / "a", count=10))
    generate(opts(tmp_path / "b", count=10, seed=43))
    users_a = {u.address for u in DataDir(tmp_path / "a").users()}
    users_b = {u.address for u in DataDir(tmp_path / "b").users()}
    assert not users_a & users_b


def test_records_are_valid_and_keys_derivable(tmp_path: Path) -> None:
    generate(opts(tmp_path / "d", count=300, tags=("individual", "farmer"), decimals=2,
                  gift_threshold=5))
    data = DataDir(tmp_path / "d")
    manifest = data.manifest()
    chain = ChainSpec.parse(manifest.chain_spec)
    balances, tags = data.balances(), data.tags()
    for row in data.users():
        doc = json.loads(data.src.get(row.address))
        assert person_errors(doc) == []
        assert identity_addresses(doc, chain) == [row.address]
        assert phone_of(doc) == row.phone
        assert address_of(derive_private_key(manifest.seed, row.index)) == row.address
        key = row.address[2:].lower()
        assert 0 <= balances[key] <= 5 * 10**2
        assert tags[key] == ["individual", "farmer"]
    assert manifest.count == 300 and manifest.decimals == 2
    assert validate(data.root).passed


def test_private_keys_never_land_in_src(tmp_path: Path) -> None:
    generate(opts(tmp_path / "d", count=20))
    data = DataDir(tmp_path / "d")
    seed = data.manifest().seed
    blob = b"".join(data.src.get(k) for k in data.src.keys())
    for row in data.users():
        assert derive_private_key(seed, row.index).hex().encode() not in blob


def test_append_continues_indices_and_equals_one_run(tmp_path: Path) -> None:
    generate(opts(tmp_path / "one", count=700))
    generate(opts(tmp_path / "two", count=400))
    before = tree_digest(tmp_path / "two")
    generate(opts(tmp_path / "two", count=300, mode="append"))
    after = tree_digest(tmp_path / "two")
    # files of the first 400 users are untouched
    assert all(after[p] == h for p, h in before.items() if p.startswith(("src", "phone")))
    assert after == tree_digest(tmp_path / "one")
    assert [u.index for u in DataDir(tmp_path / "two").users()] == list(range(700))


def test_reset_wipes_and_existing_dir_needs_a_choice(tmp_path: Path) -> None:
    generate(opts(tmp_path / "d", count=5))
    with pytest.raises(DataDirExistsError, match="already exists.*-f.*--reset"):
        generate(opts(tmp_path / "d", count=5))
    generate(opts(tmp_path / "d", count=3, mode="reset"))
    assert Manifest.read(tmp_path / "d").count == 3


def test_append_with_another_seed_is_refused(tmp_path: Path) -> None:
    generate(opts(tmp_path / "d", count=5))
    with pytest.raises(UsageError, match="seed 42"):
        generate(opts(tmp_path / "d", count=5, seed=7, mode="append"))


def test_random_seed_is_recorded_and_repeatable(tmp_path: Path) -> None:
    first = generate(GenerateOptions(directory=tmp_path / "a", count=8))
    generate(GenerateOptions(directory=tmp_path / "b", count=8, seed=first.manifest.seed))
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")


@pytest.mark.parametrize("kw,error,match", [
    ({"count": 0}, UsageError, "COUNT must be a positive"),
    ({"count": -3}, UsageError, "COUNT must be a positive"),
    ({"locale": "xx_YY"}, UsageError, "unknown locale 'xx_YY'"),
    ({"chain_spec": "evm:byzantium"}, UsageError, "malformed chain spec"),
    ({"chain_spec": "evm:byzantium:abc:x"}, UsageError, "malformed chain spec"),
    ({"decimals": 99}, UsageError, "--decimals"),
    ({"transactions": 5, "gift_threshold": 0}, UsageError, "--transactions needs"),
])
def test_bad_input_is_a_clear_error(tmp_path: Path, kw: dict, error: type, match: str) -> None:
    kw = {"count": 5, **kw}
    with pytest.raises(error, match=match):
        generate(GenerateOptions(directory=tmp_path / "d", seed=1, **kw))


def test_unwritable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(DataDirError, match="cannot write the data directory"):
        generate(opts(blocker / "sub", count=5))


def test_phones_and_addresses_unique_at_100k() -> None:
    key = b"k" * 32
    assert len({kenyan_mobile(key, i) for i in range(100_000)}) == 100_000
    assert len({address_of(derive_private_key(5, i)) for i in range(100_000)}) == 100_000


def test_transactions_never_overdraw(tmp_path: Path) -> None:
    generate(opts(tmp_path / "d", count=50, transactions=500))
    data = DataDir(tmp_path / "d")
    balances = dict(data.balances())
    rows = data.transactions_csv.read_text().splitlines()
    assert len(rows) == 500
    for line in rows:
        sender, recipient, amount, _ = line.split(",")
        s, r = sender[2:].lower(), recipient[2:].lower()
        assert s != r and int(amount) > 0
        balances[s] -= int(amount)
        assert balances[s] >= 0
        balances[r] += int(amount)
