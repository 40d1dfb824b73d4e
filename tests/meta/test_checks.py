"""The four metadata checks against the real metadata server (SQLite and PostgreSQL stores)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from cic_devnet.meta.process import MetaServerProcess
from cic_seeding.config import Settings
from cic_seeding.datadir import DataDir
from cic_seeding.errors import ConfigError
from cic_seeding.generate.keys import preferred_language
from cic_seeding.importers.meta import meta_client
from cic_seeding.meta.documents import DocumentSource, UserDocuments
from cic_seeding.verify import (
    VerifyOptions,
    VerifyResult,
    check_ids,
    run_verify,
    select_checks,
)
from cic_seeding.verify.checks import metadata as metadata_checks
from tests.meta.test_importer import imported_datadir, run_import, settings_for

COUNT = 45
META = ("metadata", "metadata_custom", "metadata_phone", "metadata_preferences")
KIND = {"metadata": "person", "metadata_phone": "phone", "metadata_custom": "custom",
        "metadata_preferences": "preferences"}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("checks") / "d"
    imported_datadir(root, COUNT)
    return root


@pytest.fixture
def data(template: Path, tmp_path: Path) -> DataDir:
    shutil.copytree(template, tmp_path / "d")
    return DataDir(tmp_path / "d")


@pytest.fixture
def imported(data: DataDir, meta_server: MetaServerProcess) -> Settings:
    """Settings of ``data`` after a cic_meta import onto the server (no token: reads only)."""
    result = run_import(settings_for(data, meta_server))
    assert result.confirmed == COUNT
    return Settings(data_dir=str(data.root), meta_url=meta_server.url, batch_size=50,
                    meta_concurrency=8)


def verify_meta(settings: Settings, **options: Any) -> VerifyResult:
    return run_verify(settings, VerifyOptions(**{"include": META, **options}))


def test_all_four_pass_after_a_cic_meta_import(imported: Settings,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    audits = []
    real = metadata_checks.audit

    def counting(*args: Any, **kw: Any) -> Any:
        audits.append(len(args[2]))
        return real(*args, **kw)

    monkeypatch.setattr(metadata_checks, "audit", counting)
    result = verify_meta(imported, batch_size=20)
    assert result.ok, result.render_text()
    assert {c: (r.ok, r.failed, r.total) for c, r in result.checks.items()} == {
        c: (COUNT, 0, COUNT) for c in META}
    assert audits == [20, 20, 5]  # one read of all four kinds per batch, not one per check


def test_selected_by_default_when_a_server_is_configured(imported: Settings) -> None:
    result = run_verify(imported, VerifyOptions(exclude=(
        "accounts_index", "balance", "faucet", "gas", "local_key")))
    ran = {c for c, r in result.checks.items() if r.ran}
    assert ran == {"imported", *META}
    assert result.not_applicable() == {c: "sovereign users"
                                       for c in ("custodial_key", "ussd", "ussd_pins")}
    assert all(result.checks[c].ok == COUNT for c in META)


def test_tampered_documents_are_caught_by_exact_count(
        imported: Settings, data: DataDir, meta_server: MetaServerProcess) -> None:
    users = list(data.users())
    found, _ = DocumentSource(data).documents(users)
    docs = [found[u.address] for u in users]
    tampered: dict[str, list[str]] = {c: [] for c in META}
    with meta_client(settings_for(data, meta_server)) as client:
        def put(check: str, i: int, change: Any) -> None:
            (pointer, doc), = [(p, d) for k, p, d in docs[i].items() if k == KIND[check]]
            client.put(pointer, change(doc))
            tampered[check].append(users[i].address.lower())

        for i in (1, 4, 30):  # custodial (index % 3 == 0) and sovereign users alike
            put("metadata", i, lambda d: {**d, "gender": "tampered"})
        for i in (3, 7):
            put("metadata_phone", i, lambda d: "0x" + "00" * 20)
        put("metadata_custom", 8, lambda d: {"tags": ["other"]})
        put("metadata_preferences", 9, lambda d: {"language": "en"})
    result = verify_meta(imported)
    assert {c: r.failed for c, r in result.checks.items()} == {c: len(tampered[c]) for c in META}
    for c in META:
        assert [f.address for f in result.checks[c].failures] == sorted(
            tampered[c], key=[u.address.lower() for u in users].index)
    assert result.checks["metadata"].failures[0].detail == "first at key 'gender'"
    preferences = result.checks["metadata_preferences"].failures[0]
    assert preferences.reason == ("its preferences document holds another preferred_language "
                                  "than the user's")
    wanted = preferred_language(data.manifest().seed, users[9].index)
    assert preferences.detail == f"preferred_language None, expected {wanted!r}"


def test_preferences_hold_each_users_language_and_the_other_one_fails(
        imported: Settings, data: DataDir, meta_server: MetaServerProcess) -> None:
    """The documents the importer wrote carry preferred_language(seed, index), both languages
    occur, and a document with the other language fails that user only."""
    users = list(data.users())
    seed = data.manifest().seed
    found, _ = DocumentSource(data).documents(users)
    languages = [preferred_language(seed, u.index) for u in users]
    assert set(languages) == {"en", "sw"}
    with meta_client(settings_for(data, meta_server)) as client:
        for u, lang in zip(users, languages, strict=True):
            got = client.get(pointer_of(found[u.address], "preferences"))
            assert got == {"preferred_language": lang}, u
        victim = users[5]
        other = {"en": "sw", "sw": "en"}[languages[5]]
        client.put(pointer_of(found[victim.address], "preferences"),
                   {"preferred_language": other})
    result = verify_meta(imported)
    (failure,) = result.checks["metadata_preferences"].failures
    assert failure.address == victim.address.lower()
    assert failure.detail == f"preferred_language {other!r}, expected {languages[5]!r}"
    assert all(result.checks[c].passed_all for c in META if c != "metadata_preferences")


def pointer_of(docs: UserDocuments, kind: str) -> str:
    (pointer,) = [p for k, p, _ in docs.items() if k == kind]
    return pointer


def test_a_malformed_tags_row_fails_that_users_custom_document_only(
        imported: Settings, data: DataDir) -> None:
    users = list(data.users())
    victim = users[4]
    key = victim.address.lower()[2:]
    lines = data.tags_csv.read_text().splitlines()
    (at,) = [i for i, line in enumerate(lines) if line.startswith(key + ",")]
    lines[at] = f"{key},individual,,food"
    data.tags_csv.write_text("\n".join(lines) + "\n")
    result = verify_meta(imported)
    assert {c: r.failed for c, r in result.checks.items()} == {
        "metadata": 0, "metadata_custom": 1, "metadata_phone": 0, "metadata_preferences": 0}
    (failure,) = result.checks["metadata_custom"].failures
    assert failure.address == victim.address.lower()
    assert failure.reason == "its tags.csv row is malformed"
    assert failure.detail == (f"tags.csv line {at + 1}, field tags: an empty tag in "
                              "'individual,,food'")
    assert f"  metadata_custom: 1 user -- its tags.csv row is malformed ({victim.address.lower()}" \
        in result.render_text()


def test_an_unreadable_new_record_fails_that_user_only(imported: Settings,
                                                       data: DataDir) -> None:
    row = list(data.users())[2]  # sovereign: new/ keyed by its own address
    data.new.path(row.address).write_bytes(b"{broken")
    result = verify_meta(imported)
    for c in META:
        (failure,) = result.checks[c].failures
        assert failure.address == row.address.lower()
        assert failure.reason == "its new/ record cannot be read"
        assert failure.detail == str(data.new.path(row.address))
        assert failure.error == ("JSONDecodeError: Expecting property name enclosed in double "
                                 "quotes: line 1 column 2 (char 1)")
    assert all(result.checks[c].ok == COUNT - 1 for c in META)


def test_a_user_without_a_new_record_fails_all_four(imported: Settings, data: DataDir) -> None:
    row = list(data.users())[2]  # sovereign: new/ keyed by its own address
    data.new.path(row.address).unlink()
    result = verify_meta(imported)
    for c in META:
        (failure,) = result.checks[c].failures
        assert failure.address == row.address.lower()
        assert failure.reason.startswith("not imported yet")


# -- without a server: selection and errors (no server process needed) -----------------------


def no_server(tmp_path: Path) -> Settings:
    imported_datadir(tmp_path / "d", 3)
    return Settings(data_dir=str(tmp_path / "d"))


def test_skipped_by_default_without_a_server(tmp_path: Path) -> None:
    settings = no_server(tmp_path)
    run, skipped = select_checks(VerifyOptions(), settings)
    reasons = {c.id: why for c, why in skipped.items() if c.id in META}
    assert set(reasons) == set(META)
    assert all(why.startswith("no metadata server is configured") for why in reasons.values())
    assert not {c.id for c in run} & set(META)
    others = tuple(i for i in check_ids() if i not in ("imported", *META))
    result = run_verify(settings, VerifyOptions(exclude=others))
    assert list(result.checks) == ["imported", *META]
    assert result.checks["metadata"].line().startswith(
        "metadata: skipped (no metadata server is configured")


def test_asking_for_one_without_a_server_is_a_config_error(tmp_path: Path) -> None:
    settings = no_server(tmp_path)
    with pytest.raises(ConfigError) as err:
        run_verify(settings, VerifyOptions(include=("metadata_phone",)))
    assert err.value.exit_code == 2
    assert "check 'metadata_phone' cannot run: no metadata server is configured" in str(err.value)
    assert "--skip-metadata or --exclude metadata_phone" in str(err.value)


def test_skip_metadata_wins_over_a_configured_server(tmp_path: Path) -> None:
    settings = no_server(tmp_path).replace(meta_url="http://127.0.0.1:9")
    run, skipped = select_checks(VerifyOptions(skip_backends=frozenset({"meta"})), settings)
    assert {c.id: why for c, why in skipped.items() if c.id in META} == {
        c: "--skip-metadata" for c in META}
    result = run_verify(settings, VerifyOptions(include=("imported", *META),
                                                skip_backends=frozenset({"meta"})))
    assert all(result.checks[c].skipped_because == "--skip-metadata" for c in META)


def test_cli_meta_url_flag(imported: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    from cic_seeding.cli.main import main

    monkeypatch.chdir(tmp_path)  # no config file of the checkout
    args = ["verify", imported.data_dir, *[a for c in META for a in ("--include", c)]]
    assert main([*args, "--meta-url", str(imported.meta_url), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {c: doc["checks"][c]["ok"] for c in META} == {c: COUNT for c in META}
    assert main(args) == 2
    assert "error: check 'metadata' cannot run: no metadata server is configured" in \
        capsys.readouterr().err
