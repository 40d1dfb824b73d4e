"""Each built-in check catches exactly the users that are wrong, and only those."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from fractions import Fraction
from pathlib import Path

import eth_keyfile
import pytest

from cic_seeding.datadir import keyfile_path
from cic_seeding.errors import UsageError
from cic_seeding.generate.keys import derive_private_key, user_address
from cic_seeding.state import open_state_store
from cic_seeding.units import dataset_to_token, dataset_to_token_exact
from cic_seeding.verify import NOT_IMPORTED, Tolerance, VerifyOptions, VerifyResult, run_verify
from cic_seeding.verify.checks.keystore import LocalKeyCheck
from tests.verify.fakes import FAUCET, SEED, World, make_world

CHAIN_CHECKS = ("accounts_index", "balance", "faucet", "gas")


def verify(world: World, **options: object) -> VerifyResult:
    opts = VerifyOptions(**{"include": CHAIN_CHECKS, **options})  # type: ignore[arg-type]
    return run_verify(world.settings, opts, chain=world.chain)


def failed(result: VerifyResult) -> dict[str, int]:
    return {cid: c.failed for cid, c in result.checks.items()}


def test_a_correct_seeding_passes_every_chain_check(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    result = verify(world)
    assert result.ok and list(result.checks) == list(CHAIN_CHECKS)
    for c in result.checks.values():
        assert (c.ok, c.failed, c.skipped, c.total) == (20, 0, 0, 20)
    assert result.token_symbol == "GFT" and result.faucet_amount == FAUCET


def test_accounts_index_catches_unregistered_users(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    for a in world.addresses[3:5]:
        world.chain.registered[a] = False
    result = verify(world)
    assert failed(result) == {"accounts_index": 2, "balance": 0, "faucet": 0, "gas": 0}
    assert [f.address for f in result.checks["accounts_index"].failures] == world.addresses[3:5]
    first = result.checks["accounts_index"].failures[0]
    assert first.reason == "the AccountsIndex does not have the user"
    assert first.detail == ""  # a sovereign user: its target is its own address


def test_gas_catches_users_without_native_balance(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    for a in world.addresses[:3]:
        world.chain.native[a] = 0
    assert failed(verify(world)) == {"accounts_index": 0, "balance": 0, "faucet": 0, "gas": 3}


def test_faucet_and_balance_without_the_faucet(tmp_path: Path) -> None:
    """A user the faucet never paid fails faucet; its balance is then the opening one alone."""
    world = make_world(tmp_path)
    unpaid, wrongly_counted = world.addresses[7], world.addresses[8]
    world.chain.next_time[unpaid] = 0
    world.chain.balances[unpaid] = world.opening[unpaid]
    world.chain.next_time[wrongly_counted] = 0  # still holds the payout: balance is wrong
    result = verify(world)
    assert failed(result) == {"accounts_index": 0, "balance": 1, "faucet": 2, "gas": 0}
    (bad,) = result.checks["balance"].failures
    assert bad.address == wrongly_counted
    opening = world.opening[wrongly_counted]
    assert bad.reason == "the token balance differs from the expected amount"
    assert bad.detail == f"expected {opening} (opening {opening} + faucet 0), found " \
                         f"{opening + FAUCET}"


def test_balance_catches_one_smallest_unit(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    world.chain.balances[world.addresses[0]] -= 1
    world.chain.balances[world.addresses[1]] += 1
    assert failed(verify(world)) == {"accounts_index": 0, "balance": 2, "faucet": 0, "gas": 0}


def test_faucet_amount_zero_makes_faucet_not_applicable_and_expects_opening(
        tmp_path: Path) -> None:
    world = make_world(tmp_path, faucet=0)
    result = verify(world, strict=True)  # not applicable is no skip, even under --strict
    faucet = result.checks["faucet"]
    assert result.ok and (faucet.not_applicable, faucet.skipped) == (20, 0)
    assert faucet.state == "not_applicable"
    assert result.not_applicable() == {
        "faucet": "users of a faucet that pays nothing (tokenAmount 0)"}
    assert result.checks["balance"].ok == 20
    assert world.chain.calls["faucet_next_time"] == 0


def test_balance_compares_in_the_tokens_decimals(tmp_path: Path) -> None:
    """Dataset amounts (6 decimals) are scaled to the token's 18, never compared unscaled."""
    world = make_world(tmp_path, decimals=6, token_decimals=18)
    assert verify(world).ok
    a = world.addresses[2]
    world.chain.balances[a] = world.opening[a] + FAUCET  # what an unscaled seeding leaves
    assert failed(verify(world))["balance"] == 1


def test_dataset_to_token_exact() -> None:
    assert dataset_to_token_exact(15, 6, 18) == 15 * 10**12
    assert dataset_to_token_exact(3_000_000, 6, 2) == 300
    assert dataset_to_token_exact(3_000_001, 6, 2) is None
    assert dataset_to_token(3_000_001, 6, 2) == 300  # what is paid: rounded down
    assert dataset_to_token(15, 6, 18) == 15 * 10**12


@pytest.mark.parametrize("adjust,passes", [
    ("1", True), ("±1", True), ("+1", True), ("-1", False), ("0.5", False),
    ("2%", True), ("+2%", True), ("-2%", False), ("0.1%", False),
])
def test_balance_adjust_above(tmp_path: Path, adjust: str, passes: bool) -> None:
    """One user holds exactly one token (10**6) more than expected; expected >= 10**6 * 50."""
    world = make_world(tmp_path, n=60)
    a = world.addresses[49]  # opening 50 tokens + 49: 1 token is just under 2%
    world.chain.balances[a] += 10**6
    result = verify(world, balance_adjust=adjust, include=("balance",))
    assert result.checks["balance"].failed == (0 if passes else 1)
    assert result.balance_adjust == adjust


def test_balance_adjust_below(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    world.chain.balances[world.addresses[0]] -= 10**6
    assert verify(world, balance_adjust="-1", include=("balance",)).ok
    assert not verify(world, balance_adjust="+1", include=("balance",)).ok


@pytest.mark.parametrize("text", ["", "x", "1.2.3", "%", "--1", "1e3"])
def test_balance_adjust_syntax(text: str) -> None:
    with pytest.raises(UsageError, match="is not a deviation"):
        Tolerance.parse(text)


def test_tolerance_bounds_are_integers() -> None:
    assert Tolerance.parse("±1.5").bounds(10**7, 6) == (8_500_000, 11_500_000)
    assert Tolerance.parse("+10%").bounds(999, 6) == (999, 1098)
    assert Tolerance.parse("-10%").bounds(999, 6) == (900, 999)


def test_users_not_imported_fail_every_chain_check(tmp_path: Path) -> None:
    world = make_world(tmp_path, imported=17)
    result = verify(world)
    for cid in CHAIN_CHECKS:
        c = result.checks[cid]
        assert (c.ok, c.failed) == (17, 3), cid
        assert [f.reason for f in c.failures] == [NOT_IMPORTED] * 3
        assert [f.address for f in c.failures] == world.addresses[17:]
    assert not any(a.endswith(tuple(world.addresses[17:])) for a in world.chain.asked)


def write_keyfile(world: World, index: int, password: str) -> None:
    key = derive_private_key(SEED, index)
    doc = eth_keyfile.create_keyfile_json(key, password.encode(), kdf="scrypt", iterations=2**10)
    path = keyfile_path(world.data.keystore, world.addresses[index])
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(doc))


def local_key(world: World) -> VerifyResult:
    return run_verify(world.settings, VerifyOptions(include=("local_key",)))


def test_local_key_catches_a_wrong_password(tmp_path: Path) -> None:
    world = make_world(tmp_path, n=3)
    for i, password in enumerate(["foo", "foo", "not-foo"]):
        write_keyfile(world, i, password)
    result = local_key(world)
    c = result.checks["local_key"]
    assert (c.ok, c.failed, c.total) == (2, 1, 3)
    assert c.failures[0].address == world.addresses[2]
    bad = c.failures[0]
    assert bad.reason == "its keyfile does not decrypt with keystore_password"
    assert "not-foo" not in bad.reason + bad.detail + bad.error
    assert result.token_symbol is None  # no chain was needed


def test_local_key_catches_missing_and_foreign_keyfiles_in_a_pool(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world = make_world(tmp_path, n=4)
    world.settings = world.settings.replace(workers=2)
    monkeypatch.setattr(LocalKeyCheck, "INLINE_BELOW", 0)
    write_keyfile(world, 0, "foo")
    write_keyfile(world, 1, "foo")
    other = keyfile_path(world.data.keystore, world.addresses[1])
    other.rename(keyfile_path(world.data.keystore, world.addresses[2]))  # 2 holds 1's key
    c = local_key(world).checks["local_key"]
    assert (c.ok, c.failed) == (1, 3)
    reasons = {f.address: (f.reason, f.detail) for f in c.failures}
    assert reasons[world.addresses[1]][0] == "there is no keyfile for the user under keystore/"
    assert reasons[world.addresses[2]][0] == "its keyfile holds the key of another address"
    assert reasons[world.addresses[2]][1].endswith(f"holds the key of {world.addresses[1]}")


# -- --balance-adjust at its bounds: N and P%, either sign, both sides of each bound ----------

DEVIATION = 10**6  # one whole token (6 decimals)


def _percent(value: Fraction, up: bool) -> str:
    """``value`` as a decimal string of 24 places, rounded up or down (never equal to it
    unless exact)."""
    scaled = value * 10**24
    digits = -(-scaled.numerator // scaled.denominator) if up else scaled.numerator // \
        scaled.denominator
    return f"{digits // 10**24}.{digits % 10**24:024d}"


@pytest.mark.parametrize("sign", ["", "±", "+", "-"])
@pytest.mark.parametrize("direction", [+1, -1])
@pytest.mark.parametrize("kind", ["units", "percent"])
@pytest.mark.parametrize("at_bound", [True, False])
def test_balance_adjust_bounds(tmp_path: Path, sign: str, direction: int, kind: str,
                               at_bound: bool) -> None:
    """One user is one token off its expected balance E. At the bound (1 token, or exactly
    100/E %) it passes if the sign allows that direction; one smallest unit inside the bound
    (0.999999 tokens, or just under 100/E %) it fails."""
    world = make_world(tmp_path, n=12)
    user = world.addresses[10]
    expected = world.chain.balances[user]
    world.chain.balances[user] = expected + direction * DEVIATION
    if kind == "units":
        amount = "1" if at_bound else "0.999999"
    else:
        exact = Fraction(DEVIATION * 100, expected)
        amount = _percent(exact, up=at_bound) + "%"
        assert Tolerance.parse(amount).bounds(expected, 6)[1] - expected == (
            DEVIATION if at_bound else DEVIATION - 1)
    allowed = sign in ("", "±") or (sign == "+") == (direction > 0)
    result = verify(world, balance_adjust=sign + amount, include=("balance",))
    failed = [f.address for f in result.checks["balance"].failures]
    assert failed == ([] if allowed and at_bound else [user])


# -- the import check -------------------------------------------------------------------------


def test_imported_names_each_user_the_importer_did_not_confirm(tmp_path: Path) -> None:
    world = make_world(tmp_path, n=8, imported=4)  # 4..7 are pending
    with open_state_store(world.settings) as store:
        store.mark_failed("eth", [(world.addresses[5], "AccountsIndex.add reverted")])
        store.mark_submitted("eth", [(world.addresses[6], "register", "0xabc", None)])
    with world.data.users_csv.open("a") as fh:  # a user the importer never heard of
        fh.write(f"8,{user_address(SEED, 8)},+254700000008\n")
    with world.data.balances_csv.open("a") as fh:
        fh.write(f"{user_address(SEED, 8).lower()[2:]},5\n")
    result = verify(world, include=("imported",))
    c = result.checks["imported"]
    assert (c.ok, c.failed, c.total) == (4, 5, 9)
    reasons = [f.reason for f in c.failures]
    assert reasons[0].startswith("not imported: the eth import has not reached the user")
    assert (reasons[1], c.failures[1].detail) == ("the eth import failed",
                                                  "AccountsIndex.add reverted")
    assert reasons[2].startswith("the eth import was submitted but never confirmed")
    assert reasons[4].startswith("never imported: importer 'eth' has no record of the user")
    assert [f.address for f in c.failures] == [*world.addresses[4:], user_address(SEED, 8).lower()]
    assert c.problems == []


def test_store_users_missing_from_the_data_directory_fail_the_run(tmp_path: Path) -> None:
    world = make_world(tmp_path, n=3)
    foreign = ["0x" + f"{i:x}" * 40 for i in (7, 8, 9, 10)]
    with open_state_store(world.settings) as store:
        store.add_users("eth", [(10 + i, a) for i, a in enumerate(foreign)])
    result = verify(world, include=("imported", "gas"))
    c = result.checks["imported"]
    assert (c.ok, c.failed) == (3, 0) and not c.passed_all and not result.ok
    (problem,) = c.problems
    assert f"holds 4 users of importer 'eth' that the data directory (3 users) does not " \
           f"({foreign[0]}, {foreign[1]}, {foreign[2]}, ...)" in problem
    text = result.render_text()
    assert "imported: 3/3, 1 run problem" in text and f"  imported: {problem}" in text
    assert text.splitlines()[-1].endswith("FAILED: 1 failure in 1 check")
    assert json.loads(result.render_json())["checks"]["imported"]["problems"] == [problem]
    suite = ET.fromstring(result.render_junit())
    failure = suite.find("testcase[@name='imported']/failure")
    assert failure is not None and failure.text is not None and problem in failure.text
    assert suite.get("failures") == "1"


def test_no_state_store_fails_imported_for_everyone(tmp_path: Path) -> None:
    world = make_world(tmp_path, n=2)
    (Path(world.settings.data_dir) / "state.db").unlink()
    result = verify(world, include=("imported",))
    assert result.checks["imported"].failed == 2
    assert "importer 'eth' has no users in the state store" in result.notes[0]
    assert not (Path(world.settings.data_dir) / "state.db").exists()
