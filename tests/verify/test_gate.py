"""What the gate reports about checks that did not verify anyone: *not applicable* (the check
does not concern these users; never a skip) versus *skipped* (it applies but could not run:
its service is not configured or does not answer), and ``--strict``, which fails on a skip."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cic_seeding.cli import verify_cmd
from cic_seeding.cli.main import main
from cic_seeding.config import Settings
from cic_seeding.state import open_state_store
from cic_seeding.verify import VerifyOptions, run_verify
from tests.helpers import free_port
from tests.verify.fakes import World, make_world

META = ("metadata", "metadata_custom", "metadata_phone", "metadata_preferences")
NO_META = ("no metadata server is configured: set meta_url (CIC_META_URL, --meta-url) or use "
           "a devnet started with --meta")


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.chdir(tmp_path)  # no config/cic-seed.toml of the checkout
    w = make_world(tmp_path, n=6)
    monkeypatch.setattr(verify_cmd, "CONNECT", lambda settings: w.chain)
    return w


def cic_verify(world: World, *args: str) -> int:
    return main(["verify", world.settings.data_dir, "--exclude", "local_key", *args])


def test_sovereign_users_not_applicable_metadata_skipped(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert cic_verify(world) == 0
    assert capsys.readouterr().out.splitlines() == [
        "accounts_index: 6/6", "balance: 6/6", "faucet: 6/6", "gas: 6/6", "imported: 6/6",
        "not applicable: custodial_key, ussd, ussd_pins (sovereign users)",
        f"skipped: {', '.join(META)} ({NO_META})",
        "6 users of token GFT, 5 checks (eth import): all ok"]


def test_strict_fails_on_a_skip_naming_the_checks(world: World,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert cic_verify(world, "--strict") == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == ("6 users of token GFT, 5 checks (eth import): FAILED: 4 checks skipped "
                         f"under --strict ({', '.join(META)})")
    # a skip asked for is a choice, not a check that could not run
    assert cic_verify(world, "--strict", "--skip-metadata") == 0
    out = capsys.readouterr().out.splitlines()
    assert f"skipped: {', '.join(META)} (--skip-metadata)" in out
    assert out[-1].endswith("all ok")
    # a failure still fails, and says both
    world.chain.native[world.addresses[2]] = 0
    assert cic_verify(world, "--strict") == 1
    assert capsys.readouterr().out.splitlines()[-1].endswith(
        f"FAILED: 1 failure in 1 check; 4 checks skipped under --strict ({', '.join(META)})")


def test_quiet_prints_only_why_the_gate_failed(world: World,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert cic_verify(world, "-q") == 0
    assert capsys.readouterr() == ("", "")
    assert cic_verify(world, "-q", "--strict") == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "error: verify: 6 users of token GFT, 5 checks (eth import): FAILED: 4 checks skipped "
        f"under --strict ({', '.join(META)})"]


def test_json_and_junit_tell_not_applicable_from_skipped(
        world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cic_verify(world, "--format", "json") == 0
    doc = json.loads(capsys.readouterr().out)
    na = ("custodial_key", "ussd", "ussd_pins")
    assert doc["not_applicable"] == {c: "sovereign users" for c in na}
    assert doc["skipped"] == {c: NO_META for c in META}
    assert doc["strict"] is False and doc["strict_skipped"] == []
    assert {c: doc["checks"][c]["status"] for c in (*na, *META, "gas")} == {
        **{c: "not_applicable" for c in na}, **{c: "skipped" for c in META}, "gas": "passed"}
    assert (doc["checks"]["ussd"]["not_applicable"], doc["checks"]["ussd"]["skipped"]) == (6, 0)
    assert (doc["checks"]["metadata"]["skipped"], doc["checks"]["metadata"]["ok"]) == (6, 0)

    junit = tmp_path / "junit.xml"
    assert cic_verify(world, "--format", "junit", "--output", str(junit)) == 0
    suite = ET.parse(junit).getroot()
    names = [c.get("name") for c in suite.findall("testcase")]
    assert names == ["accounts_index", "balance", "faucet", "gas", "imported", *META]
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["not_applicable"] == "custodial_key, ussd, ussd_pins (sovereign users)"
    assert suite.get("skipped") == "4" and suite.get("failures") == "0"
    skipped = suite.find("testcase[@name='metadata']/skipped")
    assert skipped is not None and skipped.get("message") == NO_META

    assert cic_verify(world, "--format", "junit", "--output", str(junit), "--strict") == 1
    suite = ET.parse(junit).getroot()
    assert suite.get("skipped") == "0" and suite.get("failures") == "4"
    failure = suite.find("testcase[@name='metadata_phone']/failure")
    assert failure is not None and failure.get("type") == "SkippedUnderStrict"
    assert failure.get("message") == f"6 of 6 users skipped under --strict: {NO_META}"


def test_custodial_users_have_no_local_key_and_no_ussd_unless_registered_there(
        tmp_path: Path) -> None:
    """cic_eth users: local_key does not apply; the USSD checks apply to exactly the users a
    USSD importer (here ussd-data) has in the store -- a failed registration included."""
    world = make_world(tmp_path, n=6)
    a = world.addresses
    with open_state_store(world.settings) as store:
        store.add_users("cic_eth", enumerate(a))
        store.mark_confirmed("cic_eth", [(u, "0x" + f"{i + 1:040x}") for i, u in enumerate(a)])
    result = run_verify(world.settings, VerifyOptions(importer="cic_eth",
                                                      include=("local_key", "imported", "ussd")))
    assert result.not_applicable() == {"local_key": "custodial users",
                                       "ussd": "users not registered through USSD"}
    assert result.checks["imported"].ok == 6

    with open_state_store(world.settings) as store:
        store.add_users("ussd-data", [(1, a[1]), (4, a[4])])
        store.mark_failed("ussd-data", [(a[4], "no new/ record holds its phone")])
    gateway = f"http://127.0.0.1:{free_port()}"  # nothing answers there
    settings = world.settings.replace(ussd_url=gateway, rpc_timeout=2.0, breaker_threshold=1)
    result = run_verify(settings, VerifyOptions(importer="cic_eth", include=("ussd",)))
    ussd = result.checks["ussd"]
    assert (ussd.not_applicable, ussd.skipped, ussd.ok, ussd.failed) == (4, 2, 0, 0)
    assert ussd.skip_reason is not None
    assert ussd.skip_reason.startswith("the USSD gateway did not answer: ")
    assert gateway in ussd.skip_reason
    assert result.ok and not run_verify(settings, VerifyOptions(
        importer="cic_eth", include=("ussd",), strict=True)).ok


def test_a_service_that_does_not_answer_skips_its_checks(tmp_path: Path) -> None:
    """A metadata server that is down (after the client's retries): its four checks are
    skipped once, saying so, the others verify everyone; --strict fails on it."""
    from tests.meta.test_importer import imported_datadir

    data = imported_datadir(tmp_path / "d", 6)
    url = f"http://127.0.0.1:{free_port()}"  # nothing answers there
    settings = Settings(data_dir=str(data.root), meta_url=url, meta_retries=0)
    result = run_verify(settings, VerifyOptions(include=("imported", *META)))
    assert not result.checks["imported"].passed_all  # it ran: nobody is in the state store
    reasons = result.skipped()
    assert list(reasons) == list(META)
    assert len(set(reasons.values())) == 1
    assert reasons["metadata"].startswith("the metadata server did not answer: ")
    assert url in reasons["metadata"]
    assert all((result.checks[c].skipped, result.checks[c].state) == (6, "skipped")
               for c in META)
    text = result.render_text().splitlines()
    assert f"skipped: {', '.join(META)} ({reasons['metadata']})" in text
    only_meta = run_verify(settings, VerifyOptions(include=META))
    assert only_meta.ok
    strict = run_verify(settings, VerifyOptions(include=META, strict=True))
    assert not strict.ok and [c.id for c in strict.strict_skipped()] == list(META)


def test_minus_vv_shows_the_exception_behind_each_failure(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    first = world.addresses[0]
    world.data.keystore.mkdir()
    (world.data.keystore / f"{first[2:]}.json").write_text("{not json")
    args = ["verify", world.settings.data_dir, "--include", "local_key"]
    assert main(args) == 1
    plain = capsys.readouterr().out
    assert (f"  local_key: 1 user -- its keyfile cannot be read as JSON ({first}: "
            f"keystore/{first[2:]}.json)") in plain.splitlines()
    assert "JSONDecodeError" not in plain
    assert main([*args, "-vv"]) == 1
    detailed = capsys.readouterr().out.splitlines()
    assert (f"    {first}: keystore/{first[2:]}.json [JSONDecodeError: Expecting property name "
            "enclosed in double quotes: line 1 column 2 (char 1)]") in detailed


def test_html_report_marks_not_applicable_skipped_and_strict(
        world: World, tmp_path: Path) -> None:
    from tests.verify.test_report import parse

    report = tmp_path / "r.html"
    assert cic_verify(world, "--report", str(report)) == 0
    html = parse(report.read_text())
    results = {c: r["data-result"] for c, r in html.rows.items()}
    assert results == {**{c: "pass" for c in ("accounts_index", "balance", "faucet", "gas",
                                              "imported")},
                       **{c: "n/a" for c in ("custodial_key", "ussd", "ussd_pins")},
                       **{c: "skipped" for c in META}}
    assert html.rows["ussd"]["data-not-applicable"] == "6"
    text = "".join(html.text)
    assert "not applicable: custodial_key, ussd, ussd_pins (sovereign users)" in text
    assert f"skipped: {', '.join(META)} ({NO_META})" in text
    assert cic_verify(world, "--report", str(report), "--strict") == 1
    strict = parse(report.read_text())
    assert {c: strict.rows[c]["data-result"] for c in META} == {c: "fail" for c in META}
    assert "under --strict" in "".join(strict.text)
