"""The runner and its result: batching, selection, plugins, -x, and every rendering."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from cic_seeding.errors import ManifestError, UsageError, VerifyError
from cic_seeding.verify import (
    VerifyOptions,
    VerifyResult,
    check_ids,
    get_check,
    run_verify,
)
from cic_seeding.verify import registry as check_registry
from tests.verify.fakes import FAUCET, World, make_world

BUILT_IN = ["accounts_index", "balance", "custodial_key", "faucet", "gas", "imported",
            "local_key", "metadata", "metadata_custom", "metadata_phone", "metadata_preferences",
            "ussd", "ussd_pins"]


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Installs the test checks beside the built-in ones, as third-party entry points."""
    real = check_registry._entry_points()
    pairs = [("custodial_account", "CustodialCheck"), ("every_other", "EveryOtherCheck"),
             ("forgetful", "Forgetful"), ("misnamed", "CustodialCheck")]
    extra = {name: EntryPoint(name, f"tests.verify.plugins:{cls}", check_registry.GROUP)
             for name, cls in pairs}
    monkeypatch.setattr(check_registry, "_entry_points", lambda: {**real, **extra})


CHAIN_CHECKS = ("accounts_index", "balance", "faucet", "gas")


def chain_only(world: World, **options: object) -> VerifyResult:
    opts = VerifyOptions(**{"include": CHAIN_CHECKS, **options})  # type: ignore[arg-type]
    return run_verify(world.settings, opts, chain=world.chain)


def test_built_in_checks_are_entry_points() -> None:
    assert check_ids() == BUILT_IN
    assert get_check("balance").id == "balance"


def test_unknown_ids_fail_with_near_matches() -> None:
    with pytest.raises(UsageError) as err:
        get_check("balanse")
    assert str(err.value) == ("unknown check 'balanse'; did you mean balance?; valid checks: "
                              + ", ".join(BUILT_IN))
    assert err.value.exit_code == 2


@pytest.mark.parametrize("options", [{"include": ("gaz",)}, {"exclude": ("nope",)}])
def test_unknown_ids_in_options(tmp_path: Path, options: dict[str, tuple[str]]) -> None:
    world = make_world(tmp_path, n=2)
    with pytest.raises(UsageError, match="unknown check .*valid checks: accounts_index"):
        chain_only(world, **options)


def test_every_check_runs_once_per_user_in_batches(tmp_path: Path) -> None:
    world = make_world(tmp_path, n=25)
    result = chain_only(world, batch_size=10)
    assert result.ok
    calls = world.chain.calls
    assert calls["faucet_amount"] == 1
    for name in ("have", "token_balances", "native_balances", "faucet_next_time"):
        assert calls[name] == 3, name  # balance and faucet share nextTime within a batch
    assert set(world.chain.asked.values()) == {1}  # nobody asked twice for the same thing
    assert len(world.chain.asked) == 4 * 25


def test_stop_at_the_first_failure(tmp_path: Path) -> None:
    world = make_world(tmp_path, n=25)
    world.chain.registered[world.addresses[13]] = False
    world.chain.native[world.addresses[20]] = 0
    result = chain_only(world, batch_size=10, stop_on_failure=True)
    assert result.stopped_early and not result.ok
    counts = {cid: (c.ok, c.failed, c.skipped) for cid, c in result.checks.items()}
    assert counts == {"accounts_index": (19, 1, 5), "balance": (10, 0, 15),
                      "faucet": (10, 0, 15), "gas": (10, 0, 15)}
    assert "stopped at the first failure (-x)" in result.render_text()


def test_third_party_check_with_skips(tmp_path: Path, plugins: None) -> None:
    world = make_world(tmp_path, n=8)
    result = run_verify(world.settings, VerifyOptions(include=("every_other",)))
    c = result.checks["every_other"]
    assert (c.ok, c.failed, c.skipped, c.total) == (2, 4, 2, 8)
    assert c.line() == "every_other: 2/8, 4 failed, 2 skipped"


def test_skip_flags_report_the_check_as_skipped(tmp_path: Path, plugins: None) -> None:
    world = make_world(tmp_path, n=4)
    opts = VerifyOptions(include=("custodial_account", "gas"),
                         skip_backends=frozenset({"custodial"}))
    result = run_verify(world.settings, opts, chain=world.chain)
    assert result.ok
    c = result.checks["custodial_account"]
    assert (c.skipped, c.total, c.skipped_because) == (4, 4, "--skip-custodial")
    assert c.line() == "custodial_account: skipped (--skip-custodial)"
    with pytest.raises(UsageError, match="no checks left"):
        run_verify(world.settings, VerifyOptions(include=("custodial_account",),
                                                 skip_backends=frozenset({"custodial"})))


def test_broken_plugins_are_named(tmp_path: Path, plugins: None) -> None:
    world = make_world(tmp_path, n=2)
    with pytest.raises(VerifyError, match="'misnamed'.*has id 'custodial_account'"):
        get_check("misnamed")
    with pytest.raises(VerifyError, match="'forgetful' gave no verdict for 2 of 2 users"):
        run_verify(world.settings, VerifyOptions(include=("forgetful",)))


def test_token_symbol_must_match_the_chain(tmp_path: Path) -> None:
    world = make_world(tmp_path, n=2)
    world.settings = world.settings.replace(token_symbol="SRF")
    with pytest.raises(VerifyError, match="token is GFT at 0x.*not the token symbol 'SRF'"):
        chain_only(world)


def test_no_chain_is_connected_when_no_check_needs_one(tmp_path: Path) -> None:
    world = make_world(tmp_path, n=2)

    def refuse(settings: object) -> object:
        raise AssertionError("connected")

    result = run_verify(world.settings, VerifyOptions(include=("local_key",)),
                        connect=refuse)  # type: ignore[arg-type]
    assert result.checks["local_key"].failed == 2  # no keystore/ at all


def test_not_a_data_directory(tmp_path: Path) -> None:
    from cic_seeding.config import Settings

    with pytest.raises(ManifestError, match="is not a generated data directory"):
        run_verify(Settings().replace(data_dir=str(tmp_path)), chain=None)


def test_wrong_importer_is_noted(tmp_path: Path) -> None:
    world = make_world(tmp_path, n=2)
    result = chain_only(world, importer="cic_eth")
    assert result.checks["accounts_index"].failed == 2
    assert "importer 'cic_eth' has no users in the state store" in result.render_text()


def failing_world(tmp_path: Path, n: int = 30) -> tuple[World, VerifyResult]:
    world = make_world(tmp_path, n=n)
    for a in world.addresses[:12]:
        world.chain.registered[a] = False
    world.chain.native[world.addresses[5]] = 0
    return world, chain_only(world)


def test_text_rendering(tmp_path: Path) -> None:
    world, result = failing_world(tmp_path)
    a = world.addresses
    text = result.render_text()
    assert text.splitlines() == [
        "accounts_index: 18/30, 12 failed", "balance: 30/30", "faucet: 30/30",
        "gas: 29/30, 1 failed",
        "failures:",
        f"  accounts_index: 12 users -- the AccountsIndex does not have the user (e.g. {a[0]}, "
        f"{a[1]}, {a[2]})",
        f"  gas: 1 user -- the user has no gas: its native balance is 0 wei ({a[5]})",
        "30 users of token GFT, 4 checks (eth import): FAILED: 13 failures in 2 checks"]
    assert "\x1b[" not in text
    coloured = result.render_text(colour=True)
    assert "\x1b[31m18/30\x1b[0m" in coloured and "\x1b[32m30/30\x1b[0m" in coloured


def test_grouped_text_of_a_tampered_world_with_two_reasons(tmp_path: Path) -> None:
    """Two users hold a unit too few, one more has a bad balances.csv row: one line per
    reason, counted, with example users and their particulars; every user under -vv."""
    world = make_world(tmp_path, n=12)
    a, opening = world.addresses, world.opening
    for i in (2, 7):
        world.chain.balances[a[i]] -= 1
    lines = world.data.balances_csv.read_text().splitlines()
    lines[9] = f"{a[9][2:]},12x"
    world.data.balances_csv.write_text("\n".join(lines) + "\n")
    result = chain_only(world, include=("balance",))

    def expected(i: int) -> str:
        want = opening[a[i]] + FAUCET
        return f"expected {want} (opening {opening[a[i]]} + faucet {FAUCET}), found {want - 1}"

    bad_row = ("balances.csv line 10, field amount: '12x' is not a whole number "
               "(digits 0-9 only, in the smallest unit)")
    assert result.render_text().splitlines() == [
        "balance: 9/12, 3 failed",
        "failures:",
        f"  balance: 2 users -- the token balance differs from the expected amount "
        f"({a[2]}: {expected(2)}; {a[7]}: {expected(7)})",
        f"  balance: 1 user -- its balances.csv row cannot be read ({a[9]}: {bad_row})",
        "12 users of token GFT, 1 check (eth import): FAILED: 3 failures in 1 check"]
    detailed = result.render_text(verbose=2).splitlines()
    assert detailed[3:5] == [f"    {a[2]}: {expected(2)}", f"    {a[7]}: {expected(7)}"]
    assert detailed[6] == f"    {a[9]}: {bad_row}"
    doc = json.loads(result.render_json())["checks"]["balance"]
    assert doc["failure_groups"] == [
        {"reason": "the token balance differs from the expected amount", "users": 2,
         "examples": [a[2], a[7]]},
        {"reason": "its balances.csv row cannot be read", "users": 1, "examples": [a[9]]}]
    assert [(f["address"], f["detail"]) for f in doc["failures"]] == [
        (a[2], expected(2)), (a[7], expected(7)), (a[9], bad_row)]


def test_examples_and_exceptions(tmp_path: Path) -> None:
    """Four users fail one way: three are named "e.g."; the exception behind a failure is
    in JSON and under -vv, not in the plain text."""
    world = make_world(tmp_path, n=5)
    world.data.keystore.mkdir()
    for a in world.addresses[:4]:
        (world.data.keystore / f"{a[2:]}.json").write_text("{not json")
    result = run_verify(world.settings, VerifyOptions(include=("local_key",)))
    a = world.addresses
    text = result.render_text()
    assert "  local_key: 5 users -- " not in text
    (group,) = [line for line in text.splitlines() if line.startswith("  local_key: 4 users")]
    assert group.startswith("  local_key: 4 users -- its keyfile cannot be read as JSON (e.g. "
                            f"{a[0]}: ")
    assert group.count("; ") == 2 and a[3] not in group and "JSONDecodeError" not in text
    assert "  local_key: 1 user -- there is no keyfile for the user under keystore/ (" in text
    detailed = result.render_text(verbose=2)
    assert detailed.count("[JSONDecodeError: Expecting property name enclosed in double "
                          "quotes: line 1 column 2 (char 1)]") == 4
    failures = json.loads(result.render_json())["checks"]["local_key"]["failures"]
    assert [f["error"].split(":")[0] for f in failures] == ["JSONDecodeError"] * 4 + [""]


def test_junit_rendering(tmp_path: Path) -> None:
    world, result = failing_world(tmp_path)
    suite = ET.fromstring(result.render_junit())
    assert suite.tag == "testsuite"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "2", "0")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert list(cases) == ["accounts_index", "balance", "faucet", "gas"]
    failure = cases["accounts_index"].find("failure")
    assert failure is not None
    assert failure.get("message") == ("12 of 30 users failed accounts_index (18 ok, 0 skipped, "
                                      "0 not applicable)")
    assert failure.text is not None
    lines = failure.text.splitlines()
    assert lines[0].startswith("12 users -- the AccountsIndex does not have the user (e.g. ")
    assert len(lines) == 1 + 10 + 1 and lines[-1].endswith("... and 2 more (all in --format json)")
    assert cases["balance"].find("failure") is None
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["token_symbol"] == "GFT" and props["users"] == "30"


def test_junit_marks_skipped_checks(tmp_path: Path, plugins: None) -> None:
    world = make_world(tmp_path, n=2)
    result = run_verify(world.settings, VerifyOptions(
        include=("custodial_account", "gas"), skip_backends=frozenset({"custodial"})),
        chain=world.chain)
    suite = ET.fromstring(result.render_junit())
    assert suite.get("skipped") == "1" and suite.get("failures") == "0"
    skipped = suite.find("testcase[@name='custodial_account']/skipped")
    assert skipped is not None and skipped.get("message") == "--skip-custodial"


def test_json_rendering(tmp_path: Path) -> None:
    world, result = failing_world(tmp_path)
    doc = json.loads(result.render_json())
    assert doc["ok"] is False and doc["users"] == 30 and doc["token_decimals"] == 6
    gas = doc["checks"]["gas"]
    assert (gas["ok"], gas["failed"], gas["skipped"], gas["total"]) == (29, 1, 0, 30)
    assert gas["failures"] == [{"address": world.addresses[5], "target": world.addresses[5],
                                "reason": "the user has no gas: its native balance is 0 wei",
                                "detail": "", "error": ""}]
    assert len(doc["checks"]["accounts_index"]["failures"]) == 12


def test_results_dir(tmp_path: Path) -> None:
    world, result = failing_world(tmp_path)
    out = tmp_path / "results"
    written = result.write_results_dir(out)
    assert sorted(p.name for p in written) == sorted(
        f"{kind}_{cid}" for cid in result.checks for kind in ("success", "error"))
    assert (out / "success_gas").read_text().splitlines() == \
        [a for a in world.addresses if a != world.addresses[5]]
    assert (out / "error_gas").read_text() == \
        f"{world.addresses[5]} the user has no gas: its native balance is 0 wei\n"
    errors = (out / "error_accounts_index").read_text().splitlines()
    assert [line.split(" ", 1)[0] for line in errors] == world.addresses[:12]
    assert (out / "error_balance").read_text() == ""
