#!/usr/bin/env python3
"""Metadata upload throughput: concurrency and batch writes vs one PUT at a time, in one run.

    python bench/meta.py [--users 500] [--concurrency 16] [--batch 100] [--rounds 1]
                         [--backend sqlite postgresql] [--json FILE]

Per storage backend a fresh metadata server process is started on 127.0.0.1. Each writer
uploads distinct documents of the same shape (the four documents of each of USERS generated
users: person record, phone, tags, preferences) to that server:

* ``sequential``: ``MetaClient.put`` one request at a time (the baseline);
* ``put_many``: ``MetaClient.put_many``, one PUT per document, CONCURRENCY in flight;
* ``put_many, batches``: the same with batch requests of up to BATCH documents (``PUT
  /_batch``, the devnet server's extension);
* ``cic_meta import``: the whole importer (data directory, state store, resume bookkeeping),
  with its defaults (batches of ``CIC_META_BATCH`` documents, ``CIC_META_CONCURRENCY``
  requests in flight).

Beside each client-side rate stands the server's own: the documents it stored (``GET
/_stats``) per second it was handling writes, which tells whether the server or the client
was the bound. ``--rounds R`` repeats the writers (each round with its own baseline) and shows
the medians. The ratio to the sequential rate is what matters; absolute rates depend on the
machine (client, server and database share its cores).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
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


def server_stats(url: str) -> dict[str, Any]:
    """The metadata server's write counters (``GET /_stats``)."""
    import requests

    stats: dict[str, Any] = requests.get(f"{url}/_stats", timeout=10).json()
    return stats


def server_rate(before: dict[str, Any], after: dict[str, Any]) -> float:
    """Documents per second the server stored between two ``server_stats`` snapshots,
    counting only the time it was handling writes."""
    active = after["active_seconds"] - before["active_seconds"]
    return (after["documents"] - before["documents"]) / active if active > 0 else 0.0


def import_users(server: Any, data: Path, concurrency: int | None = None) -> Any:
    """Run the cic_meta importer over the data directory ``data`` into ``server`` (with the
    default concurrency and batch size unless ``concurrency`` is given)."""
    from cic_seeding.config import Settings
    from cic_seeding.importers.meta import MetaImporter

    extra = {} if concurrency is None else {"meta_concurrency": concurrency}
    settings = Settings(data_dir=str(data), meta_url=server.url, meta_token=server.token,
                        **extra)  # type: ignore[arg-type]
    return import_all(MetaImporter(settings))


TABLE_HEADERS = ["store", "writer", "in flight", "documents", "documents/s",
                 "server documents/s", "vs sequential"]


def table_cells(row: dict[str, Any]) -> list[str]:
    """A row of the printed (and README) table."""
    return [row["store"], row["writer"], str(row["in_flight"]), f"{row['documents']:,}",
            f"{row['rate']:,.0f}", f"{row['server_rate']:,.0f}", f"{row['ratio']:.1f}x"]


def _round(server: Any, sets: list[Path], users: int, concurrency: int,
           batch: int) -> dict[str, tuple[float, float]]:
    """One round of every writer: name -> (client documents/s, server documents/s)."""
    import cic_seeding.importers.meta  # noqa: F401 -- loading the code is not throughput
    from cic_seeding.meta import MetaClient

    docs = [documents(root) for root in sets[:3]]
    rates: dict[str, tuple[float, float]] = {}

    def measure(name: str, write: Callable[[], object], count: int) -> None:
        before = server_stats(server.url)
        started = time.perf_counter()
        write()
        seconds = time.perf_counter() - started
        rates[name] = (count / seconds, server_rate(before, server_stats(server.url)))

    with MetaClient(server.url, server.token, pool_size=concurrency) as client:
        client.put(*docs[0][0])  # warm the connection
        measure("sequential", lambda: put_sequential(client, docs[0][1:]), len(docs[0]) - 1)
        measure("put_many", lambda: client.put_many(docs[1], concurrency=concurrency),
                len(docs[1]))
    with MetaClient(server.url, server.token, pool_size=concurrency, batch=batch) as client:
        assert client.batch_size() > 0, "the server offers no batch writes"
        measure("put_many, batches", lambda: client.put_many(docs[2], concurrency=concurrency),
                len(docs[2]))

    def imported() -> None:
        result = import_users(server, sets[3])
        assert result.confirmed == users, result.render_text()

    measure("cic_meta import", imported, 4 * users)
    return rates


def _run_backend(backend: str, users: int, concurrency: int, batch: int, rounds: int,
                 work: Path) -> list[dict[str, Any]]:
    server, schema = start_server(backend, work)
    runs: list[dict[str, tuple[float, float]]] = []
    try:
        for r in range(rounds):
            sets = [work / f"{backend}-{r}-{i}" for i in range(4)]
            for i, root in enumerate(sets):
                dataset(root, users, seed=100 + 10 * r + i)
            runs.append(_round(server, sets, users, concurrency, batch))
    finally:
        server.stop()
        if schema:
            drop_schema(schema)
    in_flight = {"sequential": "1", "put_many": str(concurrency),
                 "put_many, batches": f"{concurrency} x {batch} docs",
                 "cic_meta import": "defaults"}
    base = statistics.median(run["sequential"][0] for run in runs)
    rows = []
    for name in runs[0]:
        rows.append({
            "store": backend, "writer": name, "in_flight": in_flight[name],
            "documents": 4 * users, "users": users, "unit": "documents/s",
            "rate": statistics.median(run[name][0] for run in runs),
            "server_rate": statistics.median(run[name][1] for run in runs),
            "baseline": "sequential", "baseline_rate": base,
            "ratio": statistics.median(run[name][0] / run["sequential"][0] for run in runs),
            "rounds": len(runs)})
    return rows


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
    parser.add_argument("--batch", type=int, default=100,
                        help="documents per batch request of the batch writer")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of every writer; the table shows their medians")
    parser.add_argument("--backend", nargs="+", default=["sqlite", "postgresql"],
                        choices=["sqlite", "postgresql"])
    add_json_option(parser)
    args = parser.parse_args()
    record = Record("meta")
    rows: list[dict[str, Any]] = []
    for backend in args.backend:
        work = Path(tempfile.mkdtemp(prefix="cic-bench-meta-"))
        try:
            rows += _run_backend(backend, args.users, args.concurrency, args.batch,
                                 args.rounds, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(f"metadata benchmark on {machine()}, {args.rounds} round(s)")
    print(table(TABLE_HEADERS, [table_cells(r) for r in rows]))
    if args.json:
        Record.write(args.json, record.document(
            rows, options={"users": args.users, "concurrency": args.concurrency,
                           "batch": args.batch, "rounds": args.rounds,
                           "backend": args.backend}))


if __name__ == "__main__":
    main()
