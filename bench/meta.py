#!/usr/bin/env python3
"""Metadata upload throughput: bounded concurrency vs one request at a time, in the same run.

    python bench/meta.py [--users 500] [--concurrency 16] [--backend sqlite postgresql]

Per storage backend a fresh metadata server process is started on 127.0.0.1. Three writers
upload distinct documents of the same shape (the four documents of each of USERS generated
users: person record, phone, tags, preferences):

* ``sequential``: ``MetaClient.put`` one request at a time;
* ``put_many``: ``MetaClient.put_many`` with at most CONCURRENCY requests in flight;
* ``cic_meta import``: the whole importer (data directory, state store, resume bookkeeping).

The ratio to the sequential rate is what matters; absolute rates depend on the machine (client,
server and database share its cores).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._util import machine, table  # noqa: E402

PG_URL = os.environ.get("CIC_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/cic_seeding_test")


def _dataset(root: Path, users: int, seed: int) -> list[tuple[str, object]]:
    """Generate ``users`` into ``root``, 'import' them (new/ = src/ + target identity), and
    return their four documents each as (pointer, document)."""
    from cic_seeding.datadir import DataDir
    from cic_seeding.generate.generator import GenerateOptions, generate
    from cic_seeding.meta.documents import DocumentSource
    from cic_seeding.records.chainspec import ChainSpec
    from cic_seeding.records.person import add_identity, dumps

    generate(GenerateOptions(directory=root, count=users, seed=seed, workers=1,
                             tags=("individual",)))
    data = DataDir(root)
    chain = ChainSpec.parse("evm:byzantium:5050:devnet")
    rows = list(data.users())
    for row in rows:
        record = json.loads(data.src.get(row.address))
        data.new.put(row.address, dumps(add_identity(record, chain, row.address)))
    found, _ = DocumentSource(data).documents(rows)
    return [(p, d) for docs in found.values() for _, p, d in docs.items()]


def _run_backend(backend: str, users: int, concurrency: int, work: Path) -> list[list[str]]:
    from cic_devnet.meta.process import start_meta_server
    from cic_seeding.config import Settings
    from cic_seeding.importers.meta import MetaImporter
    from cic_seeding.meta import MetaClient

    sets = [_dataset(work / f"{backend}-{i}", users, seed=100 + i) for i in range(3)]
    schema = f"bench_{uuid.uuid4().hex[:10]}" if backend == "postgresql" else None
    db = PG_URL if schema else str(work / "meta.db")
    server = start_meta_server(db=db, schema=schema)
    rates: dict[str, float] = {}
    try:
        with MetaClient(server.url, server.token, pool_size=concurrency) as client:
            client.put(*sets[0][0])  # warm the connection
            started = time.perf_counter()
            for pointer, doc in sets[0]:
                client.put(pointer, doc)
            rates["sequential"] = len(sets[0]) / (time.perf_counter() - started)
            started = time.perf_counter()
            client.put_many(sets[1], concurrency=concurrency)
            rates["put_many"] = len(sets[1]) / (time.perf_counter() - started)
        settings = Settings(data_dir=str(work / f"{backend}-2"), meta_url=server.url,
                            meta_token=server.token, meta_concurrency=concurrency)
        importer = MetaImporter(settings)
        try:
            result = importer.run()
        finally:
            importer.close()
        assert result.ok and result.confirmed == users, result.render_text()
        rates["cic_meta import"] = 4 * users / result.seconds
    finally:
        server.stop()
        if schema:
            _drop_schema(schema)
    base = rates["sequential"]
    docs = 4 * users
    return [[backend, name, str(1 if name == "sequential" else concurrency), f"{docs:,}",
             f"{rate:,.0f}", f"{rate / base:.1f}x"] for name, rate in rates.items()]


def _drop_schema(schema: str) -> None:
    import psycopg2

    conn = psycopg2.connect(PG_URL)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=500, help="users per writer (4 docs each)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--backend", nargs="+", default=["sqlite", "postgresql"],
                        choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    rows = []
    for backend in args.backend:
        work = Path(tempfile.mkdtemp(prefix="cic-bench-meta-"))
        try:
            rows += _run_backend(backend, args.users, args.concurrency, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(f"metadata benchmark on {machine()}")
    print(table(["store", "writer", "in flight", "documents", "documents/s", "vs sequential"],
                rows))


if __name__ == "__main__":
    main()
