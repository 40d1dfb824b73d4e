"""Hypothesis fuzzing of the parsers that take outside input (issue 10), seeded so CI is
deterministic (``derandomize=True``):

* the data directory: person records, the csv files, the manifest, the chain spec, and the
  validator over all of them -> a value or the tool's own clean error (a CicSeedError), never a
  crash; a corrupt user fed to the real importer (real anvil) fails alone and leaves nothing
  behind (no keyfile, no new/ record, no registration);
* the metadata server (a real process): random pointers, content types, tokens and bodies ->
  never a 5xx, and the stored document is always the last accepted one, whole (a model of the
  store is checked after every request).

USSD ``text`` is fuzzed against the real gateway in tests/ussd/test_fuzz.py.
"""

from __future__ import annotations

import itertools
import json
import string
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from cic_devnet.devnet import Devnet
from cic_devnet.meta.app import MAX_BODY, canonical
from cic_devnet.meta.process import MetaServerProcess
from cic_seeding.datadir import DataDir, Manifest, UserRow
from cic_seeding.errors import ManifestError, RecordError, UsageError
from cic_seeding.generate.generator import GenerateOptions, generate
from cic_seeding.generate.validate import validate
from cic_seeding.importers._records import record_problem
from cic_seeding.records.chainspec import ChainSpec
from cic_seeding.records.person import person_errors
from cic_seeding.records.vcard import decode_vcard
from tests.e2e.procs import files_in
from tests.faults._chain import registered
from tests.generate._incli import InCli

FAST = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

# -- what outside input looks like: near misses of the real thing, and garbage ---------------
_JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                       st.text(max_size=20))
_JSON = st.recursive(_JSON_LEAF, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12)
_CSV_CELL = st.one_of(st.text(max_size=12), st.sampled_from(
    ["", "0", "-1", "1.5", "1e3", "\u00b2", "\u0663", str(2**256), str(2**256 - 1),
     "0x" + "ab" * 20, "+254700000000", " 7", "7 "]))
_DEEP = b"[" * 100_000 + b"]" * 100_000  # deeper than the JSON decoder recurses


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> DataDir:
    """A generated data directory: the fuzz tests mutate copies of its files."""
    root = tmp_path_factory.mktemp("good") / "data"
    generate(GenerateOptions(directory=root, count=6, seed=77, workers=1, transactions=4))
    return DataDir(root)


def _person(good: DataDir) -> dict[str, Any]:
    user = next(good.users())
    return dict(json.loads(good.src.get(user.address)))


@st.composite
def person_records(draw: st.DrawFn, base: dict[str, Any]) -> bytes:
    """A person record: the real one with fields replaced, dropped or added, or raw bytes."""
    kind = draw(st.sampled_from(["mutated", "json", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200) | st.just(_DEEP))
    if kind == "json":
        return json.dumps(draw(_JSON)).encode()
    doc = dict(base)
    for key in draw(st.lists(st.sampled_from(sorted(base) + ["extra"]), max_size=3)):
        if draw(st.booleans()):
            doc.pop(key, None)
        else:
            doc[key] = draw(_JSON)
    if draw(st.booleans()):
        doc["vcard"] = draw(st.sampled_from(["", "not base64!", "QkVHSU46VkNBUkQ="])
                            | st.text(alphabet=string.ascii_letters + "+/=", max_size=40))
    return json.dumps(doc).encode()


# -- data directory parsers ---------------------------------------------------------------
@FAST
@given(data=st.data())
def test_a_person_record_is_a_reason_or_none(good: DataDir,
                                             tmp_path_factory: pytest.TempPathFactory,
                                             data: st.DataObject) -> None:
    raw = data.draw(person_records(_person(good)), label="record")
    problem = _record_problem_of(raw, good, tmp_path_factory.mktemp("record"))
    assert problem is None or (isinstance(problem, str) and len(problem) < 600)
    if problem is None:  # accepted: it really is a valid person record
        assert person_errors(json.loads(raw)) == []


def test_a_record_nested_too_deeply_is_a_reason(good: DataDir, tmp_path: Path) -> None:
    problem = _record_problem_of(_DEEP, good, tmp_path)
    assert problem is not None and "is not valid JSON (JSON nested deeper than 100 levels)" \
        in problem


def _record_problem_of(raw: bytes, good: DataDir, root: Path) -> str | None:
    user = next(good.users())
    target = DataDir(root / "d")
    target.src.put(user.address, raw)
    target.balances_csv.write_text(f"{user.address.lower()[2:]},5\n")
    return record_problem(target, user)


@FAST
@given(doc=_JSON)
def test_person_errors_never_raise(doc: Any) -> None:
    assert isinstance(person_errors(doc), list)


@FAST
@given(text=st.text(max_size=80) | st.binary(max_size=60).map(
    lambda b: __import__("base64").b64encode(b).decode()))
def test_a_vcard_is_a_card_or_a_value_error(text: str) -> None:
    try:
        card = decode_vcard(text)
    except ValueError:
        return
    assert isinstance(card.phone, str)


@FAST
@given(text=st.text(max_size=40) | st.sampled_from(
    ["evm:byzantium:8996:bloxberg\n", "evm:byzantium:\u0668:x", "evm:byzantium:8996:bloxberg:x"]))
def test_a_chain_spec_is_parsed_or_a_usage_error(text: str) -> None:
    try:
        spec = ChainSpec.parse(text)
    except UsageError:
        return
    assert str(spec) == text  # accepted only when it prints back exactly


def _csv_text(rows: list[list[str]]) -> str:
    return "".join(",".join(r) + "\n" for r in rows)


@FAST
@given(rows=st.lists(st.lists(_CSV_CELL, max_size=4), max_size=6),
       raw=st.one_of(st.none(), st.binary(max_size=40)))
def test_csv_files_are_values_or_a_record_error(tmp_path_factory: pytest.TempPathFactory,
                                                rows: list[list[str]], raw: bytes | None) -> None:
    data = DataDir(tmp_path_factory.mktemp("csv"))
    body = raw if raw is not None else _csv_text(rows).encode()
    for path in (data.users_csv, data.balances_csv, data.tags_csv):
        path.write_bytes(body)
    try:
        users = list(data.users())
        assert all(isinstance(u, UserRow) and u.index >= 0 for u in users)
    except RecordError as exc:
        assert str(data.users_csv) in str(exc)
    try:
        balances = data.balances()
        assert all(0 <= v < 2**256 for v in balances.values())
    except RecordError as exc:
        assert str(data.balances_csv) in str(exc)
    try:
        data.tags()
    except RecordError as exc:
        assert str(data.tags_csv) in str(exc)


_MANIFEST_VALUES = st.one_of(_JSON_LEAF, st.lists(st.text(max_size=5), max_size=3))


@FAST
@given(changes=st.dictionaries(
    st.sampled_from(["tool_version", "seed", "count", "decimals", "chain_spec", "tags",
                     "gift_threshold", "locale", "epoch", "transactions", "schema_version",
                     "extra", "unknown"]), _MANIFEST_VALUES, max_size=3),
    drop=st.lists(st.sampled_from(["seed", "count", "decimals", "schema_version"]), max_size=2),
    raw=st.one_of(st.none(), st.binary(max_size=40)))
def test_a_manifest_is_typed_or_a_manifest_error(
        good: DataDir, tmp_path_factory: pytest.TempPathFactory, changes: dict[str, Any],
        drop: list[str], raw: bytes | None) -> None:
    doc = json.loads(good.manifest_path.read_text())
    doc.update(changes)
    for key in drop:
        doc.pop(key, None)
    root = tmp_path_factory.mktemp("manifest")
    (root / "manifest.json").write_bytes(raw if raw is not None else json.dumps(doc).encode())
    try:
        manifest = Manifest.read(root)
    except ManifestError as exc:
        assert str(root / "manifest.json") in str(exc)
        return
    # accepted: every field has the type the rest of the tool computes with
    for name in ("seed", "count", "decimals", "gift_threshold", "epoch", "transactions",
                 "schema_version"):
        value = getattr(manifest, name)
        assert isinstance(value, int) and not isinstance(value, bool) and value >= 0, name
    assert isinstance(manifest.tags, list) and all(isinstance(t, str) for t in manifest.tags)
    for name in ("tool_version", "chain_spec", "locale"):
        assert isinstance(getattr(manifest, name), str), name
    assert isinstance(manifest.extra, dict)


_FILES = ["manifest.json", "users.csv", "balances.csv", "tags.csv", "transactions.csv"]


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(which=st.sampled_from(_FILES + ["record", "pointer"]), mode=st.sampled_from(
    ["garbage", "truncate", "empty", "delete"]), blob=st.binary(max_size=64))
def test_validate_reports_and_never_crashes(good: DataDir,
                                            tmp_path_factory: pytest.TempPathFactory,
                                            which: str, mode: str, blob: bytes) -> None:
    import shutil

    root = tmp_path_factory.mktemp("validate") / "data"
    shutil.copytree(good.root, root)
    data = DataDir(root)
    user = next(data.users())
    path = {"record": data.src.path(user.address),
            "pointer": next(p for p in data.phone.root.rglob("*") if p.is_file())
            }.get(which, root / which)
    if mode == "delete":
        path.unlink()
    else:
        content = {"garbage": blob or _DEEP, "truncate": path.read_bytes()[:len(blob)],
                   "empty": b""}[mode]
        path.write_bytes(content)
    result = validate(root)
    text = result.render_text()
    assert text.splitlines()[-1] == ("valid" if result.passed else "INVALID")
    assert result.passed == ("FAILED" not in text)


_SEEDS = itertools.count(20_000)


# -- the real importer on fuzzed records: the bad ones fail alone, nothing half-written ---------
@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzzed_records_fail_alone_in_a_real_import(
        cli: InCli, module_devnet: Devnet, tmp_path_factory: pytest.TempPathFactory,
        data: st.DataObject) -> None:
    root = tmp_path_factory.mktemp("import") / "data"
    seed = next(_SEEDS)  # fresh users every example, shrinking included: one shared chain
    generate(GenerateOptions(directory=root, count=8, seed=seed, workers=1))
    target = DataDir(root)
    users = list(target.users())
    base = json.loads(target.src.get(users[0].address))
    bad = data.draw(st.lists(st.sampled_from(users), min_size=1, max_size=4, unique=True),
                    label="corrupted users")
    for user in bad:
        target.src.put(user.address, data.draw(person_records(base), label="record"))
    run = cli("import", "eth", "--dir", str(root), "--devnet", str(module_devnet.directory))
    assert run.returncode in (0, 1) and "Traceback" not in run.stderr, run
    assert "error: " not in run.stderr, run.stderr  # per-user input never stops the run
    failed = {line.split(":")[0].removeprefix("  failed ").lower()
              for line in run.stdout.splitlines() if line.startswith("  failed ")}
    assert failed <= {u.address.lower() for u in bad}
    assert (run.returncode == 1) == bool(failed)
    event(f"{len(failed)} of {len(bad)} corrupted users failed")
    imported = {u.address for u in users if u.address.lower() not in failed}
    assert registered(module_devnet, [u.address for u in users]) == imported
    for user in users:
        keyfile = target.keystore / f"{user.address.lower()[2:]}.json"
        assert keyfile.exists() == (user.address in imported)
        assert target.new.has(user.address) == (user.address in imported)
    assert files_in(target.tx.root) == len(imported)


# -- the metadata server: never a 5xx, never a partial document ------------------------------
_POINTERS = [f"{i:064x}" for i in range(1, 5)]
_BODIES = st.one_of(
    _JSON.map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=80),
    st.sampled_from([b"", b"{", b"NaN", b"[NaN]", b'{"a": Infinity}', b'"\\ud800"',
                     b'{"k": "\\udfff"}', b"1" * 5000, _DEEP, b"\xef\xbb\xbf{}",
                     b"x" * (MAX_BODY + 1), b'{"a": 1, "a": 2}']),
)


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(method=st.sampled_from(["PUT", "PUT", "POST"]),
       pointer=st.sampled_from(_POINTERS) | st.text(max_size=70).filter(lambda p: "/" not in p),
       ctype=st.sampled_from(["application/json"] * 4 + [
           "application/ld+json", "text/plain", "", "application/json; charset=utf-8"]),
       auth=st.sampled_from(["good"] * 5 + ["none", "wrong", "scheme"]), body=_BODIES)
@example(method="PUT", pointer=_POINTERS[0], ctype="application/json", auth="good",
         body=b"[NaN]")
@example(method="PUT", pointer=_POINTERS[1], ctype="application/json", auth="good",
         body=b'"\\ud800"')
@example(method="PUT", pointer=_POINTERS[2], ctype="application/json", auth="good", body=_DEEP)
@example(method="PUT", pointer=_POINTERS[3], ctype="application/json", auth="good",
         body=b"1" * 5000)
def test_the_meta_server_never_answers_5xx_nor_keeps_half_a_document(
        meta: MetaServerProcess, method: str, pointer: str, ctype: str, auth: str,
        body: bytes) -> None:
    headers = {"Content-Type": ctype} if ctype else {}
    headers["Authorization"] = {"good": f"Bearer {meta.token}", "none": "",
                                "wrong": "Bearer nope", "scheme": f"Basic {meta.token}"}[auth]
    url = f"{meta.url}/{requests.utils.quote(pointer, safe='')}"
    with requests.Session() as http:
        before = http.get(url, timeout=30) if pointer in _POINTERS else None
        reply = http.request(method, url, data=body, headers=headers, timeout=30)
        assert reply.status_code < 500, (reply.status_code, reply.text)
        assert reply.headers.get("content-type", "").startswith("application/json") or \
            reply.status_code == 304
        if pointer not in _POINTERS:
            return
        after = http.get(url, timeout=30)
    assert after.status_code in (200, 404)
    if 200 <= reply.status_code < 300:  # accepted: stored whole, as canonical JSON
        assert after.status_code == 200
        stored = json.loads(after.content)
        assert after.text == canonical(stored)
        assert stored == json.loads(body)
    else:  # refused: whatever was there before is untouched
        assert before is not None
        assert (after.status_code, after.content) == (before.status_code, before.content)
