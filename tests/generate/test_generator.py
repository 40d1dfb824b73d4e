"""The generator as a library: reproducibility, records, append/reset, transfers, memory."""

from __future__ import annotations

import json
import os
import time
import tracemalloc
from pathlib import Path

import pytest

from cic_seeding.datadir import DataDir, Manifest
from cic_seeding.errors import DataDirError, DataDirExistsError, UsageError
from cic_seeding.generate import generator
from cic_seeding.generate._worker import WorkerConfig
from cic_seeding.generate.generator import GenerateOptions, generate
from cic_seeding.generate.keys import address_of, derive_private_key, opening_balance
from cic_seeding.generate.validate import validate
from cic_seeding.records.chainspec import ChainSpec
from cic_seeding.records.person import identity_addresses, person_errors, phone_of
from cic_seeding.records.vcard import decode_vcard
from tests.helpers import tree_digest

YEAR = 365 * 86400


def opts(directory: Path, count: int = 600, **kw: object) -> GenerateOptions:
    return GenerateOptions(directory=directory, count=count, seed=kw.pop("seed", 42), **kw)  # type: ignore[arg-type]


def replay(data: DataDir) -> dict[str, int]:
    """Apply transactions.csv to balances.csv, failing on the first overdraft."""
    balances = dict(data.balances())
    for line in data.transactions_csv.read_text().splitlines():
        sender, recipient, amount, _ = line.split(",")
        s, r = sender[2:].lower(), recipient[2:].lower()
        assert s != r and int(amount) > 0
        balances[s] -= int(amount)
        assert balances[s] >= 0, f"overdraft: {line}"
        balances[r] += int(amount)
    return balances


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
        assert balances[key] == opening_balance(manifest.seed, row.index, 5 * 10**2)
        assert tags[key] == ["individual", "farmer"]
    assert manifest.count == 300 and manifest.decimals == 2
    assert manifest.tags == ["individual", "farmer"] and manifest.gift_threshold == 5
    assert validate(data.root).passed


def test_defaults_are_kenyan_and_recorded(tmp_path: Path) -> None:
    generate(opts(tmp_path / "d", count=20))
    data = DataDir(tmp_path / "d")
    m = data.manifest()
    assert (m.tags, m.decimals, m.gift_threshold, m.locale, m.chain_spec, m.epoch) == (
        ["individual"], 6, 100, "en_KE", "evm:byzantium:8996:bloxberg", 1_700_000_000)
    assert all(row.phone.startswith("+2547") and len(row.phone) == 13 for row in data.users())


def test_locale_is_selectable(tmp_path: Path) -> None:
    generate(opts(tmp_path / "ke", count=30))
    generate(opts(tmp_path / "ru", count=30, locale="ru_RU"))
    ru = DataDir(tmp_path / "ru")
    assert ru.manifest().locale == "ru_RU"
    names = [decode_vcard(json.loads(ru.src.get(u.address))["vcard"]).family for u in ru.users()]
    assert any(any("\u0400" <= ch <= "\u04ff" for ch in name) for name in names)  # Cyrillic
    assert validate(ru.root).passed


def test_private_keys_never_land_in_src(tmp_path: Path) -> None:
    generate(opts(tmp_path / "d", count=20))
    data = DataDir(tmp_path / "d")
    seed = data.manifest().seed
    blob = b"".join(data.src.get(k) for k in data.src)
    for row in data.users():
        assert derive_private_key(seed, row.index).hex().encode() not in blob


def test_epoch_dates_every_record(tmp_path: Path) -> None:
    epoch = 1_000_000_000  # 2001-09-09
    generate(opts(tmp_path / "d", count=200, epoch=epoch))
    data = DataDir(tmp_path / "d")
    assert data.manifest().epoch == epoch
    for key in data.src:
        doc = json.loads(data.src.get(key))
        assert epoch - 3 * YEAR < doc["date_registered"] <= epoch
        assert doc["date_of_birth"].get("year", 1985) <= 2001 - 16


def test_output_does_not_depend_on_the_clock_or_os_randomness(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_urandom(n: int) -> bytes:
        raise AssertionError("os.urandom used while generating with a seed")

    monkeypatch.setattr(os, "urandom", no_urandom)
    for name, now in (("a", 1_000_000_000.0), ("b", 2_000_000_000.0)):
        monkeypatch.setattr(time, "time", lambda now=now: now)
        monkeypatch.setattr(time, "time_ns", lambda now=now: int(now * 1e9))
        generate(opts(tmp_path / name, count=60, workers=1, transactions=30))
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")


def test_append_continues_indices_and_equals_one_run(tmp_path: Path) -> None:
    generate(opts(tmp_path / "one", count=520))
    generate(opts(tmp_path / "two", count=270))
    before = tree_digest(tmp_path / "two")
    csv_before = {p: (tmp_path / "two" / p).read_bytes() for p in ("users.csv", "tags.csv",
                                                                    "balances.csv")}
    generate(opts(tmp_path / "two", count=250, mode="append"))
    after = tree_digest(tmp_path / "two")
    # files of the first 270 users are untouched; csv files only grow
    assert all(after[p] == h for p, h in before.items() if p.startswith(("src", "phone")))
    assert all((tmp_path / "two" / p).read_bytes().startswith(old) for p, old in csv_before.items())
    assert after == tree_digest(tmp_path / "one")
    data = DataDir(tmp_path / "two")
    assert [u.index for u in data.users()] == list(range(520))
    assert len({u.phone for u in data.users()}) == 520
    assert validate(data.root).passed


def test_append_inherits_the_manifest_and_refuses_other_values(tmp_path: Path) -> None:
    d = tmp_path / "d"
    generate(opts(d, count=5, decimals=2, gift_threshold=7, tags=("farmer",), locale="sw",
                  chain_spec="evm:london:1337:devnet", epoch=1_600_000_000))
    generate(GenerateOptions(directory=d, count=5, mode="append", decimals=2, seed=42))  # same: ok
    before = tree_digest(d)
    m = Manifest.read(d)
    assert (m.count, m.seed, m.decimals, m.gift_threshold, m.tags, m.locale, m.chain_spec,
            m.epoch) == (10, 42, 2, 7, ["farmer"], "sw", "evm:london:1337:devnet", 1_600_000_000)
    assert validate(d).passed
    for kw, match in (({"seed": 7}, "--seed 42; appending with --seed 7"),
                      ({"decimals": 6}, "--decimals 2; appending with --decimals 6"),
                      ({"gift_threshold": 100}, "--gift-threshold 7"),
                      ({"chain_spec": "evm:byzantium:8996:bloxberg"}, "--chain-spec evm:london"),
                      ({"locale": "en_KE"}, "--locale sw"),
                      ({"tags": ("individual",)}, "--tag farmer"),
                      ({"epoch": 1_700_000_000}, "--epoch 1600000000")):
        with pytest.raises(UsageError, match=match) as err:
            generate(GenerateOptions(directory=d, count=5, mode="append", **kw))  # type: ignore[arg-type]
        assert err.value.exit_code == 2
    assert tree_digest(d) == before  # the refused runs wrote nothing


def test_append_after_an_interrupted_append_drops_its_leftover_rows(tmp_path: Path) -> None:
    d = tmp_path / "d"
    generate(opts(d, count=30, transactions=10))
    data = DataDir(d)
    for path in (data.users_csv, data.tags_csv, data.balances_csv, data.transactions_csv):
        with path.open("a") as fh:
            fh.write("garbage,left,by,a,crash\n")
    generate(opts(d, count=20, mode="append", transactions=10))
    assert validate(d).passed
    assert "garbage" not in "".join(p.read_text() for p in (data.users_csv, data.tags_csv,
                                                            data.balances_csv,
                                                            data.transactions_csv))


def test_append_to_a_damaged_or_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DataDirError, match="does not exist; drop -f"):
        generate(opts(tmp_path / "none", count=3, mode="append"))
    generate(opts(tmp_path / "d", count=10))
    (tmp_path / "d" / "users.csv").write_text("0,0xab,+254700000000\n")
    with pytest.raises(DataDirError, match="fewer rows than manifest.json counts"):
        generate(opts(tmp_path / "d", count=3, mode="append"))


def test_reset_wipes_and_existing_dir_needs_a_choice(tmp_path: Path) -> None:
    generate(opts(tmp_path / "d", count=5))
    with pytest.raises(DataDirExistsError, match="already exists.*-f.*--reset"):
        generate(opts(tmp_path / "d", count=5))
    generate(opts(tmp_path / "d", count=3, mode="reset", seed=9))
    assert Manifest.read(tmp_path / "d").count == 3
    assert len(list(DataDir(tmp_path / "d").src.keys())) == 3
    assert validate(tmp_path / "d").passed


def test_reset_refuses_a_directory_that_is_not_a_data_directory(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("precious")
    with pytest.raises(UsageError, match="--reset refuses to wipe .*thesis.tex"):
        generate(opts(home, count=3, mode="reset"))
    assert (home / "thesis.tex").read_text() == "precious"
    # an interrupted first run (no manifest yet, only generated files) may be wiped
    generate(opts(tmp_path / "half", count=3))
    (tmp_path / "half" / "manifest.json").unlink()
    generate(opts(tmp_path / "half", count=2, mode="reset"))
    assert Manifest.read(tmp_path / "half").count == 2


def test_checks_run_before_reset_wipes_anything(tmp_path: Path) -> None:
    generate(opts(tmp_path / "d", count=5))
    before = tree_digest(tmp_path / "d")
    with pytest.raises(UsageError, match="--transactions needs"):
        generate(opts(tmp_path / "d", count=1, mode="reset", transactions=3))
    assert tree_digest(tmp_path / "d") == before


def test_random_seed_is_recorded_and_repeatable(tmp_path: Path) -> None:
    first = generate(GenerateOptions(directory=tmp_path / "a", count=8, transactions=5))
    generate(GenerateOptions(directory=tmp_path / "b", count=8, seed=first.manifest.seed,
                             transactions=5))
    assert Manifest.read(tmp_path / "a").seed == first.manifest.seed
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")


@pytest.mark.parametrize("kw,match", [
    ({"count": 0}, "COUNT must be a positive"),
    ({"count": -3}, "COUNT must be a positive"),
    ({"count": 10**8 + 1}, "COUNT must be at most 100,000,000"),
    ({"locale": "xx_YY"}, "unknown locale 'xx_YY'"),
    ({"locale": "en_KX"}, "unknown locale 'en_KX'; did you mean .*en_KE"),
    ({"chain_spec": "evm:byzantium"}, "malformed chain spec"),
    ({"chain_spec": "evm:byzantium:abc:x"}, "malformed chain spec"),
    ({"decimals": 99}, "--decimals"),
    ({"gift_threshold": -1}, "--gift-threshold must be >= 0"),
    ({"gift_threshold": 2**256}, "must fit a uint256"),
    ({"transactions": -1}, "--transactions must be >= 0"),
    ({"transactions": 5, "gift_threshold": 0}, "--transactions needs"),
    ({"transactions": 5, "count": 1}, "--transactions needs"),
    ({"workers": -1}, "--workers must be >= 0"),
    ({"seed": 2**127}, "--seed must be between"),
    ({"epoch": 0}, "--epoch must be a unix time between"),
    ({"tags": ("a,b",)}, "tag 'a,b' must be"),
])
def test_bad_input_is_a_clear_error(tmp_path: Path, kw: dict, match: str) -> None:
    kw = {"count": 5, "seed": 1, **kw}
    with pytest.raises(UsageError, match=match) as err:
        generate(GenerateOptions(directory=tmp_path / "d", **kw))
    assert err.value.exit_code == 2
    assert not (tmp_path / "d").exists()  # nothing written


def test_unwritable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(DataDirError, match="cannot write the data directory"):
        generate(opts(blocker / "sub", count=5))
    with pytest.raises(DataDirError, match="it is a file"):
        generate(opts(blocker, count=5))


def test_transactions_never_overdraw(tmp_path: Path) -> None:
    generate(opts(tmp_path / "d", count=50, transactions=500))
    data = DataDir(tmp_path / "d")
    rows = data.transactions_csv.read_text().splitlines()
    assert len(rows) == 500 == data.manifest().transactions
    offsets = [int(r.split(",")[3]) for r in rows]
    assert offsets == sorted(offsets) and offsets[0] > 0
    after = replay(data)
    assert sum(after.values()) == sum(data.balances().values())
    assert validate(data.root).passed


def test_transactions_with_scarce_money_still_never_overdraw(tmp_path: Path) -> None:
    # 0 decimals and 1 unit: about half the users start empty, amounts are all 1
    generate(opts(tmp_path / "d", count=20, decimals=0, gift_threshold=1, transactions=300))
    data = DataDir(tmp_path / "d")
    assert len(data.transactions_csv.read_text().splitlines()) == 300
    replay(data)
    assert validate(data.root).passed


def test_appended_transactions_continue_the_offsets(tmp_path: Path) -> None:
    generate(opts(tmp_path / "d", count=20, transactions=15))
    generate(opts(tmp_path / "d", count=20, transactions=15, mode="append"))
    data = DataDir(tmp_path / "d")
    offsets = [int(r.split(",")[3]) for r in data.transactions_csv.read_text().splitlines()]
    assert len(offsets) == 30 == data.manifest().transactions
    assert offsets == sorted(offsets)
    replay(data)
    assert validate(data.root).passed


def _peak_bytes(directory: Path, count: int) -> int:
    tracemalloc.start()
    try:
        generate(opts(directory, count=count, workers=1, transactions=50))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_count(tmp_path: Path) -> None:
    generate(opts(tmp_path / "warm", count=3, workers=1))  # Faker's locale data, caches
    small, big = _peak_bytes(tmp_path / "small", 100), _peak_bytes(tmp_path / "big", 500)
    # 400 more users: a per-user list entry (~100+ bytes each) would add >= 40 kB
    assert big - small < 40_000, (small, big)


def test_workers_never_run_far_ahead_of_the_writer(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    monkeypatch.setattr(generator, "CHUNK", 2)
    cfg = WorkerConfig(root=str(tmp_path), seed=1, locale="en_KE",
                       chain_spec="evm:byzantium:8996:bloxberg", epoch=1_700_000_000,
                       max_balance=100)
    users = generator._users(cfg, 0, 2_000, workers=2)
    for _ in range(20):  # ten chunks consumed, then the consumer stalls
        next(users)
    time.sleep(0.5)  # ample time for two workers to build hundreds of users if unbounded
    written = sum(1 for _ in DataDir(tmp_path).src)
    users.close()
    # queued chunks: IN_FLIGHT per worker at the start, plus one per consumed chunk
    assert written <= (2 * generator.IN_FLIGHT + 10) * 2, written
