#!/usr/bin/env python3
"""Verifier throughput on a real devnet vs one request per user per check, in the same run.

    python bench/verify.py [--users 10000] [--batch-size 500] [--baseline-users N]
                           [--json FILE]

Generates USERS users, stands up a devnet (anvil + CIC contracts), seeds them with the eth
importer and the syncer (registration, opening balance, faucet payout, gas), then times the four
chain checks (accounts_index, balance, faucet, gas) over every user three ways:

* ``baseline``: one JSON-RPC round trip per user per check, one request at a time (eth_call for
  have / balanceOf / nextTime, eth_getBalance for gas) over a keep-alive HTTP session, deciding
  each check as the verifier does;
* ``run_verify, JSON-RPC batches``: the verifier reading through JSON-RPC arrays of eth_calls
  (:class:`cic_seeding.chain.reader.NetworkReader`);
* ``run_verify (default)``: the verifier as ``cic-seed verify`` runs it: one eth_call per
  question and batch, to the BatchReader contract's code placed by a state override.

Rates are user-checks per second (users x 4 checks / seconds); what matters is the ratio to the
baseline. Every run must find every user passing. Everything started is stopped at the end.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._util import Record, add_json_option, machine, table  # noqa: E402

CHAIN_CHECKS = ("accounts_index", "balance", "faucet", "gas")
TABLE_HEADERS = ["method", "user-checks", "seconds", "user-checks/s", "vs baseline",
                 "failures"]


def table_cells(row: dict[str, Any]) -> list[str]:
    """A row of the printed (and README) table."""
    return [row["method"], f"{row['user_checks']:,}", f"{row['seconds']:.2f}",
            f"{row['rate']:,.0f}", f"{row['ratio']:.1f}x", str(row["failures"])]


def _seed(work: Path, users: int, seed: int, say: Any) -> tuple[Any, Any]:
    """(devnet, settings) with ``users`` imported and synced; the caller stops the devnet."""
    from cic_devnet.devnet import devnet_up
    from cic_seeding.config import load_settings
    from cic_seeding.generate.generator import GenerateOptions, generate
    from cic_seeding.importers.eth import EthImporter
    from cic_seeding.sync.run import run_sync
    from cic_seeding.sync.syncer import SyncOptions

    started = time.perf_counter()
    generate(GenerateOptions(directory=work / "data", count=users, seed=seed))
    say(f"generated {users} users in {time.perf_counter() - started:.1f}s")
    devnet = devnet_up(work / "devnet")
    try:
        settings = load_settings({"devnet_dir": str(devnet.directory),
                                  "data_dir": str(work / "data"), "batch_size": 500},
                                 config_file=None, environ={})
        started = time.perf_counter()
        importer = EthImporter(settings)
        try:
            imported = importer.run()
        finally:
            importer.close()
        if not imported.ok:
            raise SystemExit(f"import failed:\n{imported.render_text()}")
        synced = run_sync(settings, "eth", SyncOptions(timeout=1800, poll=0.1, batch_size=500))
        if not synced.ok:
            raise SystemExit(f"sync failed:\n{synced.render_text()}")
        say(f"imported and synced in {time.perf_counter() - started:.1f}s")
    except BaseException:
        devnet.stop()
        raise
    return devnet, settings


def _baseline(settings: Any, count: int) -> tuple[float, int]:
    """(seconds, failures): the chain checks of the first ``count`` users, one request per user
    per check, one at a time."""
    import requests

    from cic_seeding.chain.connect import connect
    from cic_seeding.chain.registry import ACCOUNTS_INDEX, FAUCET, TOKEN
    from cic_seeding.datadir import DataDir

    network = connect(settings, signer=False)
    token, index, faucet = network.token(settings.token_symbol), network.accounts_index, \
        network.faucet
    amount = network.client.call(faucet, FAUCET.fn("tokenAmount"))
    data = DataDir(settings.data_dir)
    opening = data.balances()
    users = [u.address for u in data.users()][:count]
    url = network.client.rpc.url
    session = requests.Session()
    ids = iter(range(1, 10**9))

    def rpc(method: str, params: list[Any]) -> Any:
        body = {"jsonrpc": "2.0", "id": next(ids), "method": method, "params": params}
        return session.post(url, json=body, timeout=30).json()["result"]

    def call(to: str, fn: Any, *args: Any) -> Any:
        raw = rpc("eth_call", [{"to": to, "data": "0x" + fn.encode(*args).hex()}, "latest"])
        return fn.decode(bytes.fromhex(raw[2:]))

    failures = 0
    started = time.perf_counter()
    for user in users:
        failures += not call(index, ACCOUNTS_INDEX.fn("have"), user)
        paid = call(faucet, FAUCET.fn("nextTime"), user) != 0
        failures += not paid
        balance = call(token.address, TOKEN.fn("balanceOf"), user)
        failures += balance != opening[user.lower()[2:]] + (amount if paid else 0)
        failures += int(rpc("eth_getBalance", [user, "latest"]), 16) <= 0
    seconds = time.perf_counter() - started
    session.close()
    return seconds, failures


def _verify(settings: Any, batch_size: int, chain: Any = None) -> tuple[float, int, int]:
    """(seconds, user-checks, failures) of run_verify over the chain checks."""
    from cic_seeding.verify import VerifyOptions, run_verify

    options = VerifyOptions(include=CHAIN_CHECKS, batch_size=batch_size)
    started = time.perf_counter()
    result = run_verify(settings, options, chain=chain)
    seconds = time.perf_counter() - started
    return seconds, sum(c.ok + c.failed for c in result.checks.values()), result.failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--baseline-users", type=int, default=None,
                        help="users the baseline checks (default: all; rate is per user-check)")
    parser.add_argument("--seed", type=int, default=4242)
    add_json_option(parser)
    args = parser.parse_args()
    record = Record("verify")

    def say(text: str) -> None:
        print(f"-- {text}", file=sys.stderr, flush=True)

    from cic_seeding.chain.connect import verify_chain

    work = Path(tempfile.mkdtemp(prefix="cic-bench-verify-"))
    devnet = None
    try:
        devnet, settings = _seed(work, args.users, args.seed, say)
        rows: list[tuple[str, int, float, int]] = []
        base_users = min(args.users, args.baseline_users or args.users)
        say(f"baseline: {base_users} users, one request per user per check")
        seconds, failed = _baseline(settings, base_users)
        rows.append(("baseline: 1 request per user-check, sequential", base_users * 4,
                     seconds, failed))
        say("run_verify over JSON-RPC batches of eth_call")
        seconds, checks, failed = _verify(settings, args.batch_size, verify_chain(settings))
        rows.append((f"run_verify, JSON-RPC batches ({args.batch_size})", checks, seconds,
                     failed))
        say("run_verify as cic-seed verify runs it")
        seconds, checks, failed = _verify(settings, args.batch_size)
        rows.append((f"run_verify (default reader, batch {args.batch_size})", checks, seconds,
                     failed))
    finally:
        if devnet is not None:
            devnet.stop()
        shutil.rmtree(work, ignore_errors=True)
    base_rate = rows[0][1] / rows[0][2]
    body = [{"method": name, "users": args.users, "user_checks": n, "seconds": s,
             "rate": n / s, "unit": "user-checks/s", "baseline_rate": base_rate,
             "ratio": n / s / base_rate, "failures": failed} for name, n, s, failed in rows]
    print(f"verify benchmark: {args.users:,} users, 4 chain checks, on {machine()}")
    print(table(TABLE_HEADERS, [table_cells(r) for r in body]))
    if args.json:
        Record.write(args.json, record.document(
            body, options={"users": args.users, "batch_size": args.batch_size,
                           "baseline_users": args.baseline_users, "seed": args.seed}))
    if any(failed for *_, failed in rows):
        raise SystemExit("some user-checks failed: the seeding or a reader is wrong")


if __name__ == "__main__":
    main()
