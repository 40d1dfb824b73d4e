#!/usr/bin/env python3
"""Metadata upload throughput: bounded concurrency vs one request at a time, in the same run.

    python bench/meta.py [--users 500] [--concurrency 16] [--backend sqlite postgresql]
                         [--json FILE]

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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._util import Record, add_json_option, import_all, machine, table  # noqa: E402

PG_URL = os.environ.get("CIC_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/cic_seeding_test")


def dataset(root: Path, users: int, seed: int) -> list[tuple[str, Any]]:
    """Generate ``users`` into ``root``, 'import' them (new/ = src/ + target identity), and
    return their four documents each as (pointer, document)."""
    from cic_seeding.datadir import DataDir
    from cic_seeding.generate.generator import GenerateOptions, generate
    from cic_seeding.records.chainspec import ChainSpec
    from cic_seeding.records.person import add_identity, dumps

    generate(GenerateOptions(directory=root, count=users, seed=seed, workers=1,
                             tags=("individual",)))
    data = DataDir(root)
    chain = ChainSpec.parse("evm:byzantium:5050:devnet")
    for row in data.users():
        record = json.loads(data.src.get(row.address))
        data.new.put(row.address, dumps(add_identity(record, chain, row.address)))
    return documents(root)


def documents(root: Path) -> list[tuple[str, Any]]:
    """The four documents of every imported user of ``root`` as (pointer, document)."""
    from cic_seeding.datadir import DataDir
    from cic_seeding.meta.documents import DocumentSource

    data = DataDir(root)
    found, _ = DocumentSource(data).documents(list(data.users()))
    return [(p, d) for docs in found.values() for _, p, d in docs.items()]


def start_server(backend: str, work: Path) -> tuple[Any, str | None]:
    """A fresh metadata server on ``backend`` (sqlite file in ``work``, or a new PostgreSQL
    schema); returns it and the schema to drop after (None for sqlite)."""
    from cic_devnet.meta.process import start_meta_server

    schema = f"bench_{uuid.uuid4().hex[:10]}" if backend == "postgresql" else None
    work.mkdir(parents=True, exist_ok=True)
    db = PG_URL if schema else str(work / "meta.db")
    return start_meta_server(db=db, schema=schema), schema


def put_sequential(client: Any, docs: list[tuple[str, Any]]) -> float:
    """Seconds to PUT ``docs`` one request at a time (the baseline)."""
    started = time.perf_counter()
    for pointer, doc in docs:
        client.put(pointer, doc)
    return time.perf_counter() - started


def import_users(server: Any, data: Path, concurrency: int) -> Any:
    """Run the cic_meta importer over the data directory ``data`` into ``server``."""
    from cic_seeding.config import Settings
    from cic_seeding.importers.meta import MetaImporter

    settings = Settings(data_dir=str(data), meta_url=server.url, meta_token=server.token,
                        meta_concurrency=concurrency)
    return import_all(MetaImporter(settings))


TABLE_HEADERS = ["store", "writer", "in flight", "documents", "documents/s", "vs sequential"]


def table_cells(row: dict[str, Any]) -> list[str]:
    """A row of the printed (and README) table."""
    return [row["store"], row["writer"], str(row["in_flight"]), f"{row['documents']:,}",
            f"{row['rate']:,.0f}", f"{row['ratio']:.1f}x"]


def _run_backend(backend: str, users: int, concurrency: int,
                 work: Path) -> list[dict[str, Any]]:
    from cic_seeding.meta import MetaClient

    sets = [dataset(work / f"{backend}-{i}", users, seed=100 + i) for i in range(3)]
    server, schema = start_server(backend, work)
    rates: dict[str, float] = {}
    try:
        with MetaClient(server.url, server.token, pool_size=concurrency) as client:
            client.put(*sets[0][0])  # warm the connection
            rates["sequential"] = len(sets[0]) / put_sequential(client, sets[0])
            started = time.perf_counter()
            client.put_many(sets[1], concurrency=concurrency)
            rates["put_many"] = len(sets[1]) / (time.perf_counter() - started)
        result = import_users(server, work / f"{backend}-2", concurrency)
        assert result.confirmed == users, result.render_text()
        rates["cic_meta import"] = 4 * users / result.seconds
    finally:
        server.stop()
        if schema:
            drop_schema(schema)
    base = rates["sequential"]
    docs = 4 * users
    return [{"store": backend, "writer": name,
             "in_flight": 1 if name == "sequential" else concurrency, "documents": docs,
             "users": users, "rate": rate, "unit": "documents/s", "baseline": "sequential",
             "baseline_rate": base, "ratio": rate / base} for name, rate in rates.items()]


def drop_schema(schema: str, url: str = PG_URL) -> None:
    import psycopg2

    conn = psycopg2.connect(url)
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
    add_json_option(parser)
    args = parser.parse_args()
    record = Record("meta")
    rows: list[dict[str, Any]] = []
    for backend in args.backend:
        work = Path(tempfile.mkdtemp(prefix="cic-bench-meta-"))
        try:
            rows += _run_backend(backend, args.users, args.concurrency, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(f"metadata benchmark on {machine()}")
    print(table(TABLE_HEADERS, [table_cells(r) for r in rows]))
    if args.json:
        Record.write(args.json, record.document(
            rows, options={"users": args.users, "concurrency": args.concurrency,
                           "backend": args.backend}))


if __name__ == "__main__":
    main()
