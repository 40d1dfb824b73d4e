#!/usr/bin/env python3
"""The whole pipeline's throughput, each stage beside its baseline measured in the same run.

    python bench/run.py [--users 2000] [--naive-sample 200] [--dir-root /dev/shm]

Against a fresh devnet per N, each stage in its own process (so its peak RSS is its own):

* generate: users/s vs the floor (the same Faker records and key derivations, no files);
* sovereign import + sync to completion: users/s vs (a) the naive baseline -- every transaction
  of a user (add, opening balance, faucet, gas) sent in its own round trip and its receipt
  awaited before the next -- on a sample of users, and (b) the ceiling: the same number of
  pre-signed raw transactions (4 per user) pushed to the same anvil in batches as fast as it
  takes them, with nothing else to do;
* the same with the opt-in batch path (``--batch-funder``: registerAndFund, giveMany and
  giveValue through the devnet's BatchFunder, many users per transaction), against the same
  naive baseline and ceiling;
* verify: user-checks/s of the verifier vs one eth_call round trip per user per check.

Ratios are what matter (these machines are noisy); absolute figures are context.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._util import child_measure, machine, run_child, table  # noqa: E402

TX_PER_USER = 4  # add, opening balance, faucet payout, gas gift


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
        importer = EthImporter(settings)
        try:
            imported = importer.run()
        finally:
            importer.close()
        synced = run_sync(settings, "eth", SyncOptions(timeout=3600, poll=0.05))
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
        receipts = client.receipts([s.tx_hash for s in raws])
        assert len(receipts) == len(raws) and all(r.ok for r in receipts.values())
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


STAGES = {"generate": stage_generate, "floor": stage_floor, "seed": stage_seed,
          "naive": stage_naive, "ceiling": stage_ceiling, "verify": stage_verify,
          "verify_naive": stage_verify_naive}


def _child(args: list[str]) -> None:
    fn = STAGES[args[0]]
    fn(*[int(a) if a.isdigit() else a for a in args[1:]])  # type: ignore[operator]


def run_n(n: int, sample: int, root: str) -> list[list[str]]:
    from cic_devnet.devnet import devnet_up
    from cic_seeding.generate.generator import GenerateOptions, generate

    work = Path(tempfile.mkdtemp(prefix="cic-bench-run-", dir=root))
    devnet = devnet_up(work / "devnet")
    dn, data, naive_data = str(work / "devnet"), str(work / "data"), str(work / "naive")
    batch_data = str(work / "batch")
    try:
        floor = run_child(__file__, "floor", str(n), str(work / "floor"))
        gen = run_child(__file__, "generate", str(n), data)
        generate(GenerateOptions(directory=Path(naive_data), count=sample, seed=n + 1))
        naive = run_child(__file__, "naive", dn, naive_data, str(sample))
        ceiling = run_child(__file__, "ceiling", dn, str(n))
        seed = run_child(__file__, "seed", dn, data)
        generate(GenerateOptions(directory=Path(batch_data), count=n, seed=n + 2))
        batch = run_child(__file__, "seed", dn, batch_data, "devnet")
        verify = run_child(__file__, "verify", dn, data, str(sample))
        verify_naive = run_child(__file__, "verify_naive", dn, data, str(sample))
    finally:
        devnet.stop()
        shutil.rmtree(work, ignore_errors=True)

    def rate(stage: dict[str, Any], units: float) -> float:
        return units / stage["seconds"]

    gen_r, floor_r = rate(gen, n), rate(floor, n)
    seed_r = rate(seed, n)
    batch_r = rate(batch, n)
    naive_r = rate(naive, sample)
    ceiling_r = rate(ceiling, n)  # users/s the ceiling's transactions stand for
    ver_r = rate(verify, verify["extra"]["user_checks"])
    ver_naive_r = rate(verify_naive, verify_naive["extra"]["user_checks"])
    return [
        [f"{n:,}", "generate", f"{gen_r:,.0f} users/s", f"floor {floor_r:,.0f}",
         f"{gen_r / floor_r:.2f}x", "", f"{gen['peak_rss_mb']:.0f}", f"{gen['seconds']:.1f}"],
        [f"{n:,}", "import+sync (eth)", f"{seed_r:,.0f} users/s", f"naive {naive_r:,.0f}",
         f"{seed_r / naive_r:.1f}x", f"{seed_r / ceiling_r:.0%} of ceiling {ceiling_r:,.0f}",
         f"{seed['peak_rss_mb']:.0f}", f"{seed['seconds']:.1f}"],
        [f"{n:,}", "import+sync (eth, --batch-funder)", f"{batch_r:,.0f} users/s",
         f"naive {naive_r:,.0f}", f"{batch_r / naive_r:.1f}x",
         f"{batch_r / ceiling_r:.0%} of ceiling {ceiling_r:,.0f}",
         f"{batch['peak_rss_mb']:.0f}", f"{batch['seconds']:.1f}"],
        [f"{n:,}", "verify (4 chain checks)", f"{ver_r:,.0f} user-checks/s",
         f"one call per check {ver_naive_r:,.0f}", f"{ver_r / ver_naive_r:.1f}x", "",
         f"{verify['peak_rss_mb']:.0f}", f"{verify['seconds']:.1f}"],
    ]


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
    args = parser.parse_args()
    rows: list[list[str]] = []
    for n in args.users:
        rows += run_n(n, min(args.naive_sample, n), args.dir_root)
    print(f"pipeline benchmark on {machine()}, data under {args.dir_root}")
    print(table(["users", "stage", "rate", "baseline", "vs baseline", "vs ceiling",
                 "peak RSS MB", "seconds"], rows))


if __name__ == "__main__":
    main()
