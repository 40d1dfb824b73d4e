#!/usr/bin/env python3
"""The whole pipeline's throughput, each stage beside its baseline measured in the same run.

    python bench/run.py [--users 2000] [--naive-sample 200] [--dir-root /dev/shm]
                        [--stages generate,seed,together,batch,verify,meta,custodial,celery]
                        [--service-users M] [--json FILE]

Against a fresh devnet per N, each stage in its own process (so its peak RSS is its own):

* ``generate``: users/s vs the floor (the same Faker records and key derivations, no files);
* ``seed``: sovereign import + sync to completion: users/s vs (a) the naive baseline -- every
  transaction of a user (add, opening balance, faucet, gas) sent in its own round trip and its
  receipt awaited before the next -- on a sample of users, and (b) the ceiling: the same number
  of pre-signed raw transactions (4 per user) pushed to the same anvil in batches as fast as it
  takes them, with nothing else to do;
* ``together``: the same work in one run, ``cic-seed import eth --sync`` (the syncer pays
  beside the import), against the same naive baseline and ceiling;
* ``batch``: the same with the opt-in batch path (``--batch-funder``: registerAndFund,
  giveMany and giveValue through the devnet's BatchFunder, many users per transaction),
  against the same naive baseline and ceiling;
* ``verify``: user-checks/s of the verifier (over the users of ``seed``, else ``batch``) vs one
  eth_call round trip per user per check;
* ``meta``: the metadata import (``cic_meta``, four documents per user, embedded SQLite
  server, batch writes when the server offers them) in users/s vs one PUT at a time
  (bench/meta.py's pieces), on a sample; beside each, the server's own rate (documents it
  stored per second it was handling writes, from its ``GET /_stats``);
* ``custodial``: the custodial import (``cic_eth``, through the devnet's custodial engine: one
  worker, as ``devnet up --custodial`` starts it) in users/s vs one ``account.create`` at a
  time, each reply awaited, on a sample (both baselines run in their stage's process, before
  its clock starts); beside each, the engine's own rate: accounts it made per second from its
  first account made to its last registration mined (its database's timestamps);
* ``celery``: the sovereign import alone with ``--executor celery`` and 1, then 2 import
  workers (processes of this machine, a key each, as if on machines of their own) vs the
  local executor's import alone (from ``seed``'s run, or measured here), then 2 vs 1.

Ratios are what matter (these machines are noisy); absolute figures are context.
``--json FILE`` also writes the rows as numbers, with the machine, the versions and the git
commit (bench/_util.py's ``Record``; bench/table.py renders it).
``--stages`` picks a subset (the default is every stage), e.g. ``--stages
generate,batch,verify`` for a 100,000-user end-to-end run.
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

from bench._util import (  # noqa: E402
    Record,
    add_json_option,
    child_measure,
    import_all,
    machine,
    ratio_text,
    run_child,
    table,
)

TX_PER_USER = 4  # add, opening balance, faucet payout, gas gift
STAGE_NAMES = ("generate", "seed", "together", "batch", "verify", "meta", "custodial",
               "celery")
REDIS_URL = os.environ.get("CIC_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
META_CONCURRENCY = 16


def _settings(devnet: str, data: str) -> Any:
    from cic_seeding.config import load_settings

    return load_settings({"devnet_dir": devnet, "data_dir": data}, environ={})


def stage_generate(n: int, data: str) -> None:
    from cic_seeding.generate.generator import GenerateOptions, generate

    child_measure(lambda: generate(GenerateOptions(directory=Path(data), count=n, seed=n))
                  and None)


def stage_floor(n: int, data: str) -> None:
    from cic_seeding.generate import generator
    from cic_seeding.generate._worker import WorkerConfig

    cfg = WorkerConfig(root=data, seed=n, locale="en_KE",
                       chain_spec="evm:byzantium:8996:bloxberg", epoch=1_700_000_000,
                       max_balance=10**8, write=False)
    child_measure(lambda: sum(1 for _ in generator._users(cfg, 0, n, 0)) and None)


def stage_seed(devnet: str, data: str, batch_funder: str = "") -> None:
    from cic_seeding.importers.eth import EthImporter
    from cic_seeding.sync.run import run_sync
    from cic_seeding.sync.syncer import SyncOptions

    settings = _settings(devnet, data)
    if batch_funder:
        settings = settings.replace(batch_funder=batch_funder)

    def work() -> dict[str, Any]:
        started = time.perf_counter()
        importer = EthImporter(settings)
        try:
            imported = importer.run()
        finally:
            importer.close()
        import_seconds = time.perf_counter() - started
        synced = run_sync(settings, "eth", SyncOptions(timeout=3600, poll=0.05))
        if not (imported.ok and synced.ok):
            raise SystemExit(imported.render_text() + "\n" + synced.render_text())
        return {"users": synced.done, "import_seconds": import_seconds}

    child_measure(work)


def stage_together(devnet: str, data: str) -> None:
    """Import and sync in one run (``cic-seed import eth --sync``): the syncer pays beside the
    import."""
    from cic_seeding.sync.run import import_and_sync
    from cic_seeding.sync.syncer import SyncOptions

    settings = _settings(devnet, data)

    def work() -> dict[str, Any]:
        imported, synced = import_and_sync(settings, "eth", SyncOptions(timeout=3600,
                                                                        poll=0.05))
        if not (imported.ok and synced.ok):
            raise SystemExit(imported.render_text() + "\n" + synced.render_text())
        return {"users": synced.done}

    child_measure(work)


def stage_naive(devnet: str, data: str, sample: int) -> None:
    """One transaction per round trip, each receipt awaited before the next."""
    from cic_seeding.chain.connect import connect
    from cic_seeding.chain.registry import ACCOUNTS_INDEX, FAUCET, TOKEN
    from cic_seeding.chain.tx import Call
    from cic_seeding.datadir import DataDir

    settings = _settings(devnet, data)
    network = connect(settings)
    client, token = network.client, network.token()
    users = list(DataDir(data).users())[:sample]
    balances = DataDir(data).balances()

    def work() -> dict[str, Any]:
        for u in users:
            client.transact(Call(network.accounts_index, ACCOUNTS_INDEX.encode("add", u.address),
                                 gas=120_000), "add")
            client.transact(Call(token.address, TOKEN.encode(
                "transfer", u.address, balances[u.address.lower()[2:]]), gas=90_000), "fund")
            client.transact(Call(network.faucet, FAUCET.encode("giveTo", u.address),
                                 gas=200_000), "faucet")
            client.transact(Call(u.address, b"", value=settings.gas_gift, gas=21_000), "gas")
        return {"users": len(users)}

    child_measure(work)


def stage_ceiling(devnet: str, n: int) -> None:
    """4n pre-signed transactions of the same kinds, pushed in batches of 100 (mined each)."""
    from cic_seeding.chain.abi import artifact
    from cic_seeding.chain.connect import connect
    from cic_seeding.chain.registry import ACCOUNTS_INDEX, TOKEN
    from cic_seeding.chain.tx import Call

    settings = _settings(devnet, ".")
    network = connect(settings)
    client, token = network.client, network.token()
    index = client.transact(Call(None, artifact("AccountsIndex").deploy_data(), gas=3_000_000),
                            "deploy").contract_address
    assert index
    targets = [f"0x{(0xCE11 << 140) + i:040x}" for i in range(n)]
    calls = []
    for t in targets:
        calls += [Call(index, ACCOUNTS_INDEX.encode("add", t), gas=120_000),
                  Call(token.address, TOKEN.encode("transfer", t, 5), gas=90_000),
                  Call(token.address, TOKEN.encode("transfer", t, 7), gas=90_000),
                  Call(t, b"", value=1, gas=21_000)]
    first = client.pending_nonce()
    raws = [client.sign(c, first + i) for i, c in enumerate(calls)]

    def work() -> dict[str, Any]:
        for i in range(0, len(raws), 100):
            errors = client.rpc.batch([("eth_sendRawTransaction", [s.raw])
                                       for s in raws[i:i + 100]])
            assert not any(isinstance(e, Exception) for e in errors), errors[:3]
            client.mine()
        # 500 receipts a request (not ChainClient.receipts' 25, which bounds the memory of
        # big receipts): these are small, and the ceiling takes the quickest way
        receipts = client.rpc.batch([("eth_getTransactionReceipt", [s.tx_hash]) for s in raws],
                                    chunk=500)
        assert all(isinstance(r, dict) and int(r["status"], 16) == 1 for r in receipts)
        return {"transactions": len(raws)}

    child_measure(work)


def stage_verify(devnet: str, data: str, sample: int) -> None:
    from cic_seeding.verify import VerifyOptions, run_verify

    settings = _settings(devnet, data)
    options = VerifyOptions(include=("accounts_index", "balance", "faucet", "gas"))

    def work() -> dict[str, Any]:
        result = run_verify(settings, options)
        if not result.ok:
            raise SystemExit(result.render_text())
        return {"user_checks": sum(c.total for c in result.checks.values())}

    child_measure(work)


def stage_verify_naive(devnet: str, data: str, sample: int) -> None:
    """One eth_call (or eth_getBalance) round trip per user per check."""
    from cic_seeding.chain.connect import connect
    from cic_seeding.chain.registry import ACCOUNTS_INDEX, FAUCET, TOKEN
    from cic_seeding.datadir import DataDir

    network = connect(_settings(devnet, data), signer=False)
    client, token = network.client, network.token()
    users = [u.address for u in DataDir(data).users()][:sample]

    def work() -> dict[str, Any]:
        for u in users:
            client.call(network.accounts_index, ACCOUNTS_INDEX.fn("have"), u)
            client.call(token.address, TOKEN.fn("balanceOf"), u)
            client.call(network.faucet, FAUCET.fn("nextTime"), u)
            client.rpc.call("eth_getBalance", [u, "latest"])
        return {"user_checks": 4 * len(users)}

    child_measure(work)


def stage_meta(data: str, naive_data: str, work: str) -> None:
    """The cic_meta importer over ``data`` (records under new/) into a fresh server; first,
    off the clock, the baseline: ``naive_data``'s documents PUT one at a time. Beside each,
    the server's own rate: documents it stored per second it was handling writes."""
    import cic_seeding.importers.meta  # noqa: F401 -- loading the code is not throughput
    from bench.meta import (
        documents,
        import_users,
        put_sequential,
        server_rate,
        server_stats,
        start_server,
    )
    from cic_seeding.meta import MetaClient

    docs = documents(Path(naive_data))
    server, _ = start_server("sqlite", Path(work))
    try:
        with MetaClient(server.url, server.token, pool_size=1) as client:
            client.put(*docs[0])  # warm the connection
            before = server_stats(server.url)
            naive = put_sequential(client, docs)
            naive_server = server_rate(before, server_stats(server.url))
        before = server_stats(server.url)

        def measured() -> dict[str, Any]:
            users = import_users(server, Path(data), META_CONCURRENCY).confirmed
            return {"users": users, "naive_users": len(docs) // 4, "naive_seconds": naive,
                    "server_docs_s": server_rate(before, server_stats(server.url)),
                    "naive_server_docs_s": naive_server}

        child_measure(measured)
    finally:
        server.stop()


def stage_custodial(devnet: str, data: str, naive_data: str, broker: str, queue: str) -> None:
    """The cic_eth importer over ``data`` through the running engine (registrations mined);
    first, off the clock, the baseline: one ``account.create`` per user of ``naive_data`` at
    a time, each reply awaited before the next."""
    from cic_seeding.custodial import TASK_CREATE, CustodialClient
    from cic_seeding.datadir import DataDir
    from cic_seeding.importers.cic_eth import CicEthImporter

    client = CustodialClient(broker, queue)
    client.open()
    try:
        naive_users = [u.address.lower() for u in DataDir(naive_data).users()]
        started = time.perf_counter()
        for address in naive_users:
            client.call(TASK_CREATE, {"request_id": address}, what=address)
        naive = time.perf_counter() - started
    finally:
        client.close()
    settings = _settings(devnet, data).replace(custodial_broker_url=broker,
                                               custodial_queue=queue)

    def work() -> dict[str, Any]:
        result = import_all(CicEthImporter(settings))
        return {"users": result.confirmed + result.found_on_chain,
                "naive_users": len(naive_users), "naive_seconds": naive}

    child_measure(work)


def stage_import(devnet: str, data: str, queue: str = "") -> None:
    """The sovereign import alone (no sync): the local executor, or with a queue the celery
    executor on the import workers consuming it."""
    from cic_seeding.importers.eth import EthImporter

    settings = _settings(devnet, data)
    if queue:
        settings = settings.replace(import_executor="celery", import_queue=queue,
                                    import_broker_url=REDIS_URL)

    def work() -> dict[str, Any]:
        result = import_all(EthImporter(settings))
        return {"users": result.confirmed + result.found_on_chain}

    child_measure(work)


STAGES = {"generate": stage_generate, "floor": stage_floor, "seed": stage_seed,
          "together": stage_together,
          "naive": stage_naive, "ceiling": stage_ceiling, "verify": stage_verify,
          "verify_naive": stage_verify_naive, "meta": stage_meta,
          "custodial": stage_custodial, "import": stage_import}


def _child(args: list[str]) -> None:
    fn = STAGES[args[0]]
    fn(*[int(a) if a.isdigit() else a for a in args[1:]])  # type: ignore[operator]


def _row(n: int, stage: str, rate: float, unit: str, baseline: str, baseline_rate: float,
         measured: dict[str, Any], ceiling: float | None = None, **extra: Any) -> dict[str, Any]:
    """A stage's figures as numbers (the JSON's row; :func:`table_cells` prints it): ``rate``
    in ``unit``, its ``baseline`` (what it is) and that baseline's rate in the same unit,
    the ceiling's rate when the stage has one; ``extra`` adds figures of the stage's own."""
    detail = measured.get("extra")
    return {"users": n, "stage": stage, "rate": rate, "unit": unit, "baseline": baseline,
            "baseline_rate": baseline_rate, "ratio": rate / baseline_rate, "ceiling": ceiling,
            "ceiling_ratio": rate / ceiling if ceiling else None,
            "peak_rss_mb": measured["peak_rss_mb"], "seconds": measured["seconds"], **extra,
            "detail": detail if isinstance(detail, dict) else {}}


TABLE_HEADERS = ["users", "stage", "rate", "baseline", "vs baseline", "vs ceiling",
                 "peak RSS MB", "seconds"]


def table_cells(row: dict[str, Any]) -> list[str]:
    """A row of the printed (and README) table."""
    ceiling = (f"{row['ceiling_ratio']:.0%} of ceiling {row['ceiling']:,.0f}"
               if row["ceiling"] else "")
    rate = f"{row['rate']:,.0f} {row['unit']}"
    baseline = f"{row['baseline']} {row['baseline_rate']:,.0f}"
    if row.get("server_rate") is not None:  # the service's own rate beside the client's
        name = row.get("server_name", "server")
        rate += f" ({name} {row['server_rate']:,.0f} {row['server_unit']})"
        baseline += f" ({name} {row['baseline_server_rate']:,.0f} {row['server_unit']})"
    return [f"{row['users']:,}", row["stage"], rate, baseline, ratio_text(row["ratio"]),
            ceiling, f"{row['peak_rss_mb']:.0f}", f"{row['seconds']:.1f}"]


def _rate(measured: dict[str, Any], units: float) -> float:
    return units / measured["seconds"]


def run_n(n: int, sample: int, root: str, stages: list[str],
          service_users: int | None = None) -> list[dict[str, Any]]:
    """The rows of every stage in ``stages`` for ``n`` users (``service_users`` for the meta,
    custodial and celery stages; default ``n``)."""
    from cic_devnet.devnet import devnet_up

    work = Path(tempfile.mkdtemp(prefix="cic-bench-run-", dir=root))
    chain = set(stages) - {"generate", "meta"}
    devnet = devnet_up(work / "devnet") if chain else None
    dn = str(work / "devnet")
    rows: list[dict[str, Any]] = []
    try:
        if "generate" in stages:
            rows += _generate(n, work)
        sovereign: dict[str, tuple[str, dict[str, Any]]] = {}
        if {"seed", "together", "batch"} & set(stages):
            rows += _sovereign(n, sample, work, dn, stages, sovereign)
        if "verify" in stages:
            data = (sovereign.get("seed") or sovereign.get("together") or sovereign["batch"])[0]
            rows += _verify(n, sample, dn, data)
        m = service_users or n
        if "meta" in stages:
            rows += _meta(m, min(sample, m), work)
        if "custodial" in stages:
            assert devnet is not None
            rows += _custodial(m, min(sample, m), work, devnet)
        if "celery" in stages:
            local = sovereign["seed"][1] if "seed" in sovereign and m == n else None
            rows += _celery(m, work, dn, local)
    finally:
        if devnet is not None:
            devnet.stop()
        shutil.rmtree(work, ignore_errors=True)
    return rows


def _data(work: Path, name: str, count: int, seed: int) -> str:
    from cic_seeding.generate.generator import GenerateOptions, generate

    generate(GenerateOptions(directory=work / name, count=count, seed=seed))
    return str(work / name)


def _generate(n: int, work: Path) -> list[dict[str, Any]]:
    floor = run_child(__file__, "floor", str(n), str(work / "floor"))
    gen = run_child(__file__, "generate", str(n), str(work / "generated"))
    gen_r, floor_r = _rate(gen, n), _rate(floor, n)
    return [_row(n, "generate", gen_r, "users/s", "floor", floor_r, gen)]


def _sovereign(n: int, sample: int, work: Path, dn: str, stages: list[str],
               out: dict[str, tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The naive baseline, then the ceiling and each sovereign stage from the same chain: the
    chain is put back (``evm_snapshot``/``evm_revert``) before each, since anvil's cost of a
    block grows with the state, and a stage run after another's users would pay for them.
    ``seed`` runs last and its chain stays (``verify`` reads it)."""
    naive_data = _data(work, "naive", sample, n + 1)
    naive = run_child(__file__, "naive", dn, naive_data, str(sample))
    rpc = _devnet_rpc(dn)
    snapshot = rpc.call("evm_snapshot")
    ceiling = run_child(__file__, "ceiling", dn, str(n))
    naive_r = _rate(naive, sample)
    ceiling_r = _rate(ceiling, n)  # users/s the ceiling's transactions stand for
    runs = [(stage, child, label, funder, seed) for stage, child, label, funder, seed in (
        ("batch", "seed", "import+sync (eth, --batch-funder)", "devnet", n + 2),
        ("together", "together", "import --sync (eth, one run)", "", n + 5),
        ("seed", "seed", "import+sync (eth)", "", n)) if stage in stages]
    rows = []
    for stage, child, label, funder, seed in runs:
        if not rpc.call("evm_revert", [snapshot]):
            raise SystemExit(f"benchmark: anvil could not revert to snapshot {snapshot}")
        snapshot = rpc.call("evm_snapshot")  # a snapshot is used up by its revert
        data = _data(work, stage, n, seed)
        measured = run_child(__file__, child, dn, data, *([funder] if funder else []))
        out[stage] = (data, measured)
        r = _rate(measured, n)
        rows.append(_row(n, label, r, "users/s", "naive", naive_r, measured, ceiling_r))
    order = {"seed": 0, "together": 1, "batch": 2}  # the table's order, as before
    return sorted(rows, key=lambda row: order[next(st for st, _, lb, _, _ in runs
                                                 if lb == row["stage"])])


def _devnet_rpc(dn: str) -> Any:
    from cic_seeding.chain.rpc import JsonRpc

    info = json.loads((Path(dn) / "devnet.json").read_text())
    return JsonRpc(info["rpc_url"])


def _verify(n: int, sample: int, dn: str, data: str) -> list[dict[str, Any]]:
    verify = run_child(__file__, "verify", dn, data, str(sample))
    naive = run_child(__file__, "verify_naive", dn, data, str(sample))
    r = _rate(verify, verify["extra"]["user_checks"])
    naive_r = _rate(naive, naive["extra"]["user_checks"])
    return [_row(n, "verify (4 chain checks)", r, "user-checks/s", "one call per check",
                 naive_r, verify)]


def _meta(n: int, sample: int, work: Path) -> list[dict[str, Any]]:
    from bench.meta import dataset

    dataset(work / "meta", n, seed=n + 3)
    dataset(work / "meta-naive", sample, seed=n + 4)
    imported = run_child(__file__, "meta", str(work / "meta"), str(work / "meta-naive"),
                         str(work / "meta-server"))
    extra = imported["extra"]
    naive_r = extra["naive_users"] / extra["naive_seconds"]
    r = _rate(imported, n)
    return [_row(n, "metadata import (cic_meta, 4 docs/user)", r, "users/s",
                 "one PUT at a time", naive_r, imported, server_rate=extra["server_docs_s"],
                 baseline_server_rate=extra["naive_server_docs_s"], server_unit="docs/s")]


def _custodial(n: int, sample: int, work: Path, devnet: Any) -> list[dict[str, Any]]:
    from bench.meta import drop_schema
    from cic_devnet.anvil import dev_key
    from cic_devnet.custodial.devnet import DEFAULT_DB, EngineOptions, start_engine, stop_engine
    from cic_seeding.chain.client import ChainClient
    from cic_seeding.chain.rpc import JsonRpc
    from cic_seeding.chain.signer import Signer
    from cic_seeding.datadir import DataDir

    tag = uuid.uuid4().hex[:10]
    schema, queue = f"bench_{tag}", f"bench_custodial_{tag}"
    deployer = ChainClient(JsonRpc(devnet.rpc_url), signer=Signer.from_key(dev_key(0)),
                           explicit_mining=True)
    naive_data = _data(work, "custodial-naive", sample, n + 5)
    data = _data(work, "custodial", n, n + 6)
    info = start_engine(devnet.directory, deployer, devnet.registry,
                        EngineOptions(broker_url=REDIS_URL, schema=schema, queue=queue),
                        chain_spec=devnet.info["chain_spec"])
    try:
        imported = run_child(__file__, "custodial", str(devnet.directory), data, naive_data,
                             REDIS_URL, queue)
        engine, naive_engine = (
            _engine_rate(DEFAULT_DB, schema, [u.address.lower() for u in DataDir(d).users()])
            for d in (data, naive_data))
    finally:
        stop_engine(info)
        drop_schema(schema, DEFAULT_DB)
    naive_r = imported["extra"]["naive_users"] / imported["extra"]["naive_seconds"]
    r = _rate(imported, n)
    return [_row(n, "custodial import (cic_eth, 1 engine worker)", r, "users/s",
                 "one create at a time", naive_r, imported, server_rate=engine,
                 baseline_server_rate=naive_engine, server_unit="accounts/s",
                 server_name="engine")]


def _engine_rate(db_url: str, schema: str, request_ids: list[str],
                 timeout: float = 60.0) -> float:
    """Accounts per second the engine made for ``request_ids``, by its own clock: from its
    first account made to its last registration mined (waiting for the engine's tracker to
    mark the last ones, which the client learns from the chain)."""
    import psycopg2

    conn = psycopg2.connect(db_url)
    deadline = time.monotonic() + timeout
    try:
        with conn.cursor() as cur:
            cur.execute(f'SET search_path TO "{schema}"')
            while True:
                cur.execute("SELECT count(*), min(a.created_at), max(t.updated_at), "
                            "count(*) FILTER (WHERE t.status = 'mined') FROM accounts a "
                            "JOIN txs t ON t.request_id = a.request_id AND t.kind = 'register' "
                            "WHERE a.request_id = ANY(%s)", (request_ids,))
                count, first, last, mined = cur.fetchone()
                conn.rollback()  # a fresh snapshot for the next look
                if count == mined == len(request_ids) or time.monotonic() > deadline:
                    break
                time.sleep(0.05)  # the engine's tracker marks them within moments
    finally:
        conn.close()
    if mined != len(request_ids):
        raise SystemExit(f"the engine registered {mined} of {len(request_ids)} accounts")
    return float(count) / max(float(last) - float(first), 1e-9)


def _celery(n: int, work: Path, dn: str, local: dict[str, Any] | None) -> list[dict[str, Any]]:
    """1 worker on one queue, then 2 on another; all three booted together beforehand."""
    from cic_seeding.config import load_settings
    from cic_seeding.importers.celery_worker import spawn_worker, wait_workers

    if local is None:
        local = run_child(__file__, "import", dn, _data(work, "local", n, n + 7))
        local_s = local["seconds"]
    else:
        local_s = local["extra"]["import_seconds"]
    tag = uuid.uuid4().hex[:10]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIC_")}
    env.update({"CIC_DEVNET_DIR": dn, "CIC_IMPORT_BROKER_URL": REDIS_URL})
    settings = load_settings({}, config_file=None, environ={k: v for k, v in env.items()
                                                            if k.startswith("CIC_")})
    fleets = {1: [f"bench-{tag}-a"], 2: [f"bench-{tag}-b", f"bench-{tag}-c"]}
    procs = []
    runs = []
    try:
        for size, names in fleets.items():
            for name in names:  # a key directory each: as if on machines of their own
                procs.append(spawn_worker(
                    {**env, "CIC_IMPORT_QUEUE": f"bench_import_{tag}_{size}",
                     "CIC_IMPORT_WORKER_DIR": str(work / name)},
                    name=name, log_file=work / f"{name}.log"))
        wait_workers(settings, [n for names in fleets.values() for n in names], procs)
        for size in fleets:
            runs.append(run_child(__file__, "import", dn,
                                  _data(work, f"celery{size}", n, n + 8 + size),
                                  f"bench_import_{tag}_{size}"))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
    local_r, one_r, two_r = n / local_s, _rate(runs[0], n), _rate(runs[1], n)
    return [
        _row(n, "import (eth, --executor celery, 1 worker)", one_r, "users/s",
             "local executor", local_r, runs[0]),
        _row(n, "import (eth, --executor celery, 2 workers)", two_r, "users/s", "1 worker",
             one_r, runs[1]),
    ]


def parse_stages(text: str) -> list[str]:
    stages = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGE_NAMES]
    if unknown or not stages:
        raise SystemExit(f"error: unknown stage {', '.join(unknown) or '(none given)'}; "
                         f"valid stages: {', '.join(STAGE_NAMES)}")
    if "verify" in stages and not {"seed", "together", "batch"} & set(stages):
        raise SystemExit("error: stage verify checks the users of stage seed or batch: "
                         "add one of them to --stages")
    return stages


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[2000])
    parser.add_argument("--naive-sample", type=int, default=200,
                        help="users the naive baselines run on (their rate is per user)")
    default_root = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    parser.add_argument("--dir-root", default=default_root)
    parser.add_argument("--stages", type=parse_stages, default=list(STAGE_NAMES),
                        help=f"comma-separated subset of: {','.join(STAGE_NAMES)} (default: all)")
    parser.add_argument("--service-users", type=int, default=None,
                        help="users of the meta, custodial and celery stages (default: N; "
                             "their rates barely depend on N, and CI keeps them small)")
    add_json_option(parser)
    args = parser.parse_args()
    record = Record("run")
    rows: list[dict[str, Any]] = []
    for n in args.users:
        rows += run_n(n, min(args.naive_sample, n), args.dir_root, args.stages,
                      args.service_users)
    print(f"pipeline benchmark on {machine()}, data under {args.dir_root}")
    print(table(TABLE_HEADERS, [table_cells(r) for r in rows]))
    if args.json:
        Record.write(args.json, record.document(
            rows, options={"users": args.users, "naive_sample": args.naive_sample,
                           "service_users": args.service_users, "stages": args.stages,
                           "dir_root": args.dir_root}))


if __name__ == "__main__":
    main()
