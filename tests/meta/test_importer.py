"""The cic_meta importer and the metadata audit against the real server process."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from cic_devnet.meta.process import MetaServerProcess, start_meta_server
from cic_seeding.config import Settings
from cic_seeding.datadir import DataDir
from cic_seeding.errors import ConfigError, MetadataRequestError, MetadataUnavailableError
from cic_seeding.generate.generator import GenerateOptions, generate
from cic_seeding.importers import get_importer
from cic_seeding.importers.meta import MetaImporter, meta_client
from cic_seeding.meta.audit import audit
from cic_seeding.meta.documents import KINDS, DocumentSource
from cic_seeding.records.chainspec import ChainSpec
from cic_seeding.records.person import add_identity, dumps
from cic_seeding.records.pointers import person_pointer
from cic_seeding.state import Status, open_state_store

TARGET_CHAIN = "evm:byzantium:5050:devnet"
COUNT = 300


def imported_datadir(root: Path, count: int = COUNT, seed: int = 7) -> DataDir:
    """Generated users 'imported' as a chain importer leaves them: every third one custodial
    (a new target address), the rest sovereign (same address)."""
    generate(GenerateOptions(directory=root, count=count, seed=seed, workers=1,
                             tags=("individual", "food")))
    data = DataDir(root)
    chain = ChainSpec.parse(TARGET_CHAIN)
    for row in data.users():
        record = json.loads(data.src.get(row.address))
        target = row.address
        if row.index % 3 == 0:
            target = "0x" + hashlib.sha256(row.address.encode()).hexdigest()[:40].upper()
        data.new.put(target, dumps(add_identity(record, chain, target)))
    return data


@pytest.fixture(scope="module")
def data_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "d"
    imported_datadir(root)
    return root


@pytest.fixture
def data(data_template: Path, tmp_path: Path) -> DataDir:
    import shutil

    shutil.copytree(data_template, tmp_path / "d")
    return DataDir(tmp_path / "d")


def settings_for(data: DataDir, server: MetaServerProcess, **kw: object) -> Settings:
    base = dict(data_dir=str(data.root), meta_url=server.url, meta_token=server.token,
                batch_size=50, meta_concurrency=8, meta_retries=2, rpc_retries=1)
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


def run_import(settings: Settings, **kw: object):  # type: ignore[no-untyped-def]
    importer = MetaImporter(settings, **kw)  # type: ignore[arg-type]
    importer.retry_base = 0.01
    try:
        return importer.run()
    finally:
        importer.close()


def audit_all(data: DataDir, server: MetaServerProcess):  # type: ignore[no-untyped-def]
    with meta_client(Settings(meta_url=server.url)) as client:
        return audit(client, DocumentSource(data), list(data.users()), concurrency=8)


def test_registered_as_plugin() -> None:
    assert get_importer("cic_meta") is MetaImporter


def test_needs_a_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CIC_META_URL"):
        MetaImporter(Settings(data_dir=str(tmp_path)))


def test_300_users_written_and_all_checks_pass(data: DataDir,
                                               meta_server: MetaServerProcess) -> None:
    result = run_import(settings_for(data, meta_server))
    assert (result.total, result.confirmed, result.failed) == (COUNT, COUNT, 0)
    report = audit_all(data, meta_server)
    assert {k: (a.checked, a.failed) for k, a in report.items()} == {
        k: (COUNT, 0) for k in KINDS}
    # a rerun has nothing left to do
    again = run_import(settings_for(data, meta_server))
    assert (again.done_before, again.submitted) == (COUNT, 0)


def test_tampered_documents_caught_by_exact_count(data: DataDir,
                                                  meta_server: MetaServerProcess) -> None:
    run_import(settings_for(data, meta_server))
    users = list(data.users())
    source = DocumentSource(data)
    docs, _ = source.documents(users[:5])
    with meta_client(settings_for(data, meta_server)) as client:
        for i, d in enumerate(docs.values()):
            items = {kind: (p, doc) for kind, p, doc in d.items()}
            if i < 3:  # person: one field changed
                p, doc = items["person"]
                client.put(p, {**doc, "gender": "tampered"})
            if i < 2:  # phone pointer -> another address
                client.put(items["phone"][0], "0x" + "00" * 20)
            if i == 4:
                client.put(items["custom"][0], {"tags": ["other"]})
    report = audit_all(data, meta_server)
    assert {k: a.failed for k, a in report.items()} == {
        "person": 3, "phone": 2, "custom": 1, "preferences": 0}
    assert report["person"].failures[0][1].detail == "first at key 'gender'"


def test_users_not_imported_yet_fail_with_a_hint(data: DataDir,
                                                 meta_server: MetaServerProcess) -> None:
    users = list(data.users())
    for row in users[1:3]:
        data.new.path(row.address).unlink()  # sovereign users 1, 2 (index 0 is custodial)
    result = run_import(settings_for(data, meta_server))
    assert (result.confirmed, result.failed) == (COUNT - 2, 2)
    assert "run a chain importer first" in result.failures[0][1]


def test_wrong_token_stops_the_run(data: DataDir, meta_server: MetaServerProcess) -> None:
    with pytest.raises(MetadataRequestError) as info:
        run_import(settings_for(data, meta_server, meta_token="wrong"))
    assert info.value.status == 401
    with open_state_store(url=str(data.root / "state.db")) as store:
        assert store.counts("cic_meta").get(Status.CONFIRMED, 0) == 0


def _versions(server: MetaServerProcess) -> dict[str, int]:
    """pointer -> version straight from the server's store."""
    if server.db.startswith("postgresql"):
        import psycopg2

        conn = psycopg2.connect(server.db, options=f"-c search_path={server.schema}")
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pointer, version FROM meta_documents")
                return dict(cur.fetchall())
        finally:
            conn.close()
    import sqlite3

    conn = sqlite3.connect(server.db)
    try:
        return dict(conn.execute("SELECT pointer, version FROM meta_documents").fetchall())
    finally:
        conn.close()


def test_server_restart_mid_import_then_rerun_completes(
        data: DataDir, fresh_server: MetaServerProcess) -> None:
    settings = settings_for(data, fresh_server, meta_retries=1)
    seen = [0]

    def progress(n: int) -> None:
        seen[0] += n
        if seen[0] >= 100 and fresh_server._proc and fresh_server._proc.poll() is None:
            fresh_server.stop()  # the server goes away with batches in flight

    with pytest.raises(MetadataUnavailableError) as info:
        run_import(settings, progress=progress)
    assert fresh_server.url in str(info.value)
    with open_state_store(url=str(data.root / "state.db")) as store:
        first = store.counts("cic_meta").get(Status.CONFIRMED, 0)
    assert 100 <= first < COUNT

    restarted = start_meta_server(port=fresh_server.port, db=fresh_server.db,
                                  token=fresh_server.token, schema=fresh_server.schema)
    try:
        result = run_import(settings)
        assert (result.done_before, result.confirmed, result.failed) == (
            first, COUNT - first, 0)
        versions = _versions(restarted)
        assert len(versions) == 4 * COUNT
        assert set(versions.values()) == {1}  # nothing rewritten, nothing twice
        report = audit_all(data, restarted)
        assert all(a.failed == 0 and a.checked == COUNT for a in report.values())
        assert person_pointer(next(iter(data.users())).address) not in versions  # custodial
    finally:
        restarted.stop()


def _stats(server: MetaServerProcess) -> dict[str, float]:
    import requests

    stats: dict[str, float] = requests.get(f"{server.url}/_stats", timeout=30).json()
    return stats


def test_batch_writes_store_what_one_put_per_document_stores(
        meta_server: MetaServerProcess, tmp_path: Path) -> None:
    """The importer writes in batch requests where the server takes them; one PUT per document
    (meta_batch 0, what a CIC metadata server gets) then finds every document unchanged."""
    import shutil

    count = 60
    batched = imported_datadir(tmp_path / "batched", count=count, seed=4242)
    shutil.copytree(batched.root, tmp_path / "single")
    single = DataDir(tmp_path / "single")
    before = _stats(meta_server)
    result = run_import(settings_for(batched, meta_server, batch_size=20, meta_batch=30))
    after = _stats(meta_server)
    assert (result.confirmed, result.failed) == (count, 0)
    assert after["created"] - before["created"] == 4 * count
    # 3 batches of 20 users, 80 documents each: requests of 30, 30 and 20 documents
    assert after["write_requests"] - before["write_requests"] == 3 * 3
    result = run_import(settings_for(single, meta_server, meta_batch=0))
    again = _stats(meta_server)
    assert (result.confirmed, result.failed) == (count, 0)
    assert again["unchanged"] - after["unchanged"] == 4 * count
    assert again["write_requests"] - after["write_requests"] == 4 * count
    assert again["documents"] - after["documents"] == 4 * count


def test_a_document_the_server_refuses_costs_its_user_alone(
        data: DataDir, meta_server: MetaServerProcess) -> None:
    """In a batch request too: the user whose person record is over the server's size limit
    fails with the server's reason, the users written in the same requests are confirmed."""
    users = list(data.users())
    big = users[4]  # sovereign (index 4): its new/ record is under its own address
    record = json.loads(data.new.get(big.address))
    record["padding"] = "x" * (64 * 1024)
    data.new.put(big.address, dumps(record))
    result = run_import(settings_for(data, meta_server, meta_batch=40))
    assert (result.confirmed, result.failed) == (COUNT - 1, 1)
    assert result.failures[0][0] == big.address
    assert "refused with 413" in result.failures[0][1], result.failures
    report = audit_all(data, meta_server)
    assert report["person"].failed == 1 and report["phone"].failed == 0
