#!/usr/bin/env python3
"""Our JSON-RPC client beside web3.py on the same node, the same data and the same run.

    python bench/node_client.py [--reads 1000] [--sends 500] [--logs 5000] [--batch 500]
                                [--queries 1] [--rounds 5] [--default-middleware]
                                [--json FILE]

Issue 20 asks whether the library should talk to nodes through web3.py (the field's library)
instead of its own client (``cic_seeding.chain.rpc`` and ``chain.client``): switch if web3.py
is within 10 % of ours on every workload, else keep ours and say why. One anvil
(``--no-mining``, as the devnet runs it) with one GiftableToken; off the clock, LOGS token
transfers to distinct addresses (the Transfer logs to query, the balances to read) and every
transaction the send workloads will take, signed beforehand. Then an untimed warm-up round and
ROUNDS timed rounds; a round runs every client of every workload back to back, the order
rotated from round to round, so all see the same node and the same noise. Pools are mined
between clients, off the clock. Every answer is checked (balances, hashes, log counts, every
transaction mined), so nothing is timed that did not do the work.

* ``reads``: READS ``balanceOf`` eth_calls (encoded, sent, decoded) in JSON-RPC batches of
  BATCH;
* ``sends, batched``: SENDS pre-signed raw transactions in batches of BATCH;
* ``sends, one by one``: SENDS pre-signed raw transactions, a request each;
* ``logs``: QUERIES eth_getLogs of the token's Transfer logs over the LOGS transfers' blocks.

The clients: ``ours`` (``ChainClient.call_many``, ``ChainClient.broadcast``, ``JsonRpc.call``,
``ChainClient.logs``); web3.py's API as its users call it (``w3.batch_requests()`` over contract
functions, and over ``w3.eth.call`` with our ABI coding; ``w3.eth.send_raw_transaction``;
``w3.eth.get_logs``); and web3.py's ``HTTPProvider`` called directly (``make_request``,
``make_batch_request``) with our ABI coding above it: its transport alone, its best case and
the only way it batches ``eth_sendRawTransaction`` (``batch_requests()`` refuses it). web3.py
is set up at its best: a keep-alive ``requests`` session, an ``exception_retry_configuration``
like our retries (5, 0.2 s backoff), no middleware (``--default-middleware`` adds its API with
the default middleware too, which is slower).

The ratio column is web3's time over ours, round by round (median, and min-max over the rounds:
the noise); beside it the CPU time this process spent (the client's own work: the node's time
is the same for every client, and load from other processes skews it far less). The verdict
applies the issue's rule to web3.py's API (what switching to it means) on the times, and shows
its HTTPProvider alone beside it.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.metadata
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._util import Record, add_json_option, machine, table  # noqa: E402

OURS = "ours"
DEFAULTS, BARE = "web3 API, default middleware", "web3 API, no middleware"
PROVIDER = "web3 HTTPProvider directly"
API_TIER = "web3.py's API (batch_requests, w3.eth, contract functions)"
PROVIDER_TIER = "web3.py's HTTPProvider alone (our ABI coding and results above it)"
#: Within this factor of ours on every workload, the library should switch to web3.py.
SWITCH_WITHIN = 1.10
TRANSFER_GAS = 60_000


@dataclass
class Workload:
    """One piece of work, the clients that do it and their times per round."""

    key: str
    name: str
    units: int
    unit: str
    #: client label -> callable doing the work once (returns nothing; checks inside)
    clients: dict[str, Callable[[], None]]
    #: run after each client, off the clock (mining the pool it filled)
    after: Callable[[], None] | None = None
    times: dict[str, list[float]] = field(default_factory=dict)
    #: client label -> this process's CPU seconds per round (the client's own work: the node's
    #: time is the same for every client, and other processes' load counts far less here)
    cpu: dict[str, list[float]] = field(default_factory=dict)


def _web3(url: str, *, middleware: bool) -> Any:
    """web3.py at its best over HTTP: a keep-alive session, retries like ours."""
    import requests
    from web3 import Web3
    from web3.providers.rpc.utils import ExceptionRetryConfiguration

    provider = Web3.HTTPProvider(
        url, session=requests.Session(), request_kwargs={"timeout": 30},
        exception_retry_configuration=ExceptionRetryConfiguration(
            errors=(ConnectionError, requests.ConnectionError, requests.HTTPError,
                    requests.Timeout),
            retries=5, backoff_factor=0.2))
    return Web3(provider) if middleware else Web3(provider, middleware=[])


class Bench:
    """The node, the token, the data and both clients (everything set up off the clock)."""

    def __init__(self, work: Path, reads: int, sends: int, logs: int, batch: int,
                 queries: int, rounds: int, say: Callable[[str], None], *,
                 default_middleware: bool = False) -> None:
        from cic_devnet.anvil import start_anvil
        from cic_devnet.devnet import BLOCK_GAS_LIMIT

        self.batch, self.queries, self.say = batch, queries, say
        self.node = start_anvil(chain_id=8996, log_file=work / "anvil.log",
                                block_gas_limit=BLOCK_GAS_LIMIT, keep_states=16)
        try:
            self._set_up(work, reads, sends, logs, rounds, default_middleware)
        except BaseException:
            self.node.stop()
            raise

    def _set_up(self, work: Path, reads: int, sends: int, logs: int, rounds: int,
                default_middleware: bool) -> None:
        from cic_devnet.anvil import dev_key
        from cic_seeding.chain.client import ChainClient
        from cic_seeding.chain.registry import TOKEN
        from cic_seeding.chain.rpc import JsonRpc
        from cic_seeding.chain.signer import Signer
        from cic_seeding.chain.tx import Call

        self.ours = ChainClient(JsonRpc(self.node.url), signer=Signer.from_key(dev_key(0)),
                                explicit_mining=True, lock_dir=str(work / "locks"))
        client = self.ours
        deployed = client.transact(Call(None, TOKEN.deploy_data("Bench", "BNCH", 6, 0),
                                        gas=5_000_000), "deploy the token")
        assert deployed.contract_address
        self.token = str(deployed.contract_address)
        assert client.signer is not None
        client.transact(Call(self.token, TOKEN.encode("mintTo", client.signer.address, 10**30),
                             gas=200_000), "mint")
        self.transfer_topic = TOKEN.topic("Transfer")
        self.log_count = max(logs, reads)
        self.holders = [f"0x{(0xB0B << 148) + i:040x}" for i in range(self.log_count)]
        self.amounts = {a: i + 1 for i, a in enumerate(self.holders)}
        started = time.perf_counter()
        first = client.head() + 1
        self._push([Call(self.token, TOKEN.encode("transfer", a, self.amounts[a]),
                         gas=TRANSFER_GAS) for a in self.holders])
        self.log_range = (first, client.head())
        self.say(f"{self.log_count:,} transfers in blocks {self.log_range[0]}-{self.log_range[1]} "
                 f"({time.perf_counter() - started:.1f}s)")
        self.readers = self.holders[:reads]
        self.reads, self.sends = reads, sends
        self.balance_of = TOKEN.fn("balanceOf")
        self.w3 = {BARE: _web3(self.node.url, middleware=False)}
        if default_middleware:
            self.w3[DEFAULTS] = _web3(self.node.url, middleware=True)
        self.contracts = {k: w.eth.contract(address=w.to_checksum_address(self.token),
                                            abi=TOKEN.abi) for k, w in self.w3.items()}
        self.checksummed = [self.w3[BARE].to_checksum_address(a) for a in self.readers]
        clients_sending = 2 + 2 + len(self.w3)  # batched: 2; one by one: ours, provider, APIs
        self._raws = self._presign((rounds + 1) * clients_sending * sends)
        self._taken = 0

    def close(self) -> None:
        self.node.stop()

    # -- set-up ------------------------------------------------------------------------------
    def _push(self, calls: list[Any]) -> None:
        """Send ``calls`` in batches, mining each; every one must be mined and succeed."""
        client = self.ours
        nonce = client.pending_nonce()
        signed = [client.sign(c, nonce + i) for i, c in enumerate(calls)]
        for i in range(0, len(signed), self.batch):
            errors = client.broadcast([s.raw for s in signed[i:i + self.batch]])
            assert not any(errors), errors[:3]
        receipts = client.wait([s.tx_hash for s in signed])
        assert all(r.ok for r in receipts.values()), "a set-up transfer reverted"

    def _presign(self, count: int) -> list[tuple[str, str]]:
        """``count`` token transfers of 1 unit each (to addresses nobody reads, so the reads'
        answers stay put), nonces in the order they will be sent: (tx hash, raw)."""
        from cic_seeding.chain.registry import TOKEN
        from cic_seeding.chain.tx import Call

        started = time.perf_counter()
        client = self.ours
        nonce = client.pending_nonce()
        price = client.gas_price() * 4  # blocks stay far under target: the base fee falls
        assert client.signer is not None
        out = []
        for i in range(count):
            sink = f"0x{(0x5111 << 144) + i % 1000:040x}"
            call = Call(self.token, TOKEN.encode("transfer", sink, 1), gas=TRANSFER_GAS)
            s = client.signer.sign(call, nonce=nonce + i, gas_price=price,
                                   chain_id=client.chain_id)
            out.append((s.tx_hash, s.raw))
        self.say(f"{count:,} transactions signed for the send workloads "
                 f"({time.perf_counter() - started:.1f}s)")
        return out

    def _take(self) -> list[tuple[str, str]]:
        taken = self._raws[self._taken:self._taken + self.sends]
        self._taken += self.sends
        assert len(taken) == self.sends, "ran out of pre-signed transactions"
        return taken

    def _settle(self, sent: list[tuple[str, str]]) -> None:
        """Off the clock: mine the pool; every transaction sent must be mined and succeed."""
        receipts = self.ours.wait([h for h, _ in sent])
        assert len(receipts) == len(sent) and all(r.ok for r in receipts.values())

    # -- the clients -------------------------------------------------------------------------
    # ours: the library's own calls. web3 at three depths: its API as its users call it
    # (contract functions, w3.eth), with default middleware or none; and its HTTPProvider
    # called directly (make_request / make_batch_request), the ABI coding ours (eth-abi through
    # cic_seeding.chain.abi): web3's transport alone, its best case.
    def reads_ours(self) -> None:
        token, fn = self.token, self.balance_of
        for chunk in self._chunks(self.readers):
            values = self.ours.call_many([(token, fn, (a,)) for a in chunk])
            assert values == [self.amounts[a] for a in chunk], values[:3]

    def reads_web3(self, label: str) -> None:
        w3, contract = self.w3[label], self.contracts[label]
        for chunk in self._chunks(self.checksummed):
            with w3.batch_requests() as batch:
                for a in chunk:
                    batch.add(contract.functions.balanceOf(a))
                values = batch.execute()
            assert values == [self.amounts[a.lower()] for a in chunk], values[:3]

    def reads_web3_eth_call(self) -> None:
        """w3.batch_requests() over w3.eth.call, the call data and results coded as ours."""
        w3, fn = self.w3[BARE], self.balance_of
        token = w3.to_checksum_address(self.token)
        for chunk in self._chunks(self.readers):
            with w3.batch_requests() as batch:
                for a in chunk:
                    batch.add(w3.eth.call({"to": token, "data": "0x" + fn.encode(a).hex()}))
                answers = batch.execute()
            values = [fn.decode(bytes(r)) for r in answers]
            assert values == [self.amounts[a] for a in chunk], values[:3]

    def reads_provider(self) -> None:
        provider, fn, token = self.w3[BARE].provider, self.balance_of, self.token
        for chunk in self._chunks(self.readers):
            answers = provider.make_batch_request(
                [("eth_call", [{"to": token, "data": "0x" + fn.encode(a).hex()}, "latest"])
                 for a in chunk])
            assert isinstance(answers, list), answers
            values = [fn.decode(bytes.fromhex(r["result"][2:])) for r in answers]
            assert values == [self.amounts[a] for a in chunk], values[:3]

    def sends_ours(self) -> list[tuple[str, str]]:
        sent = self._take()
        for chunk in self._chunks(sent):
            errors = self.ours.broadcast([raw for _, raw in chunk], mine=False)
            assert not any(errors), errors[:3]
        return sent

    def sends_provider_batch(self) -> list[tuple[str, str]]:
        """web3.py's batch_requests() refuses eth_sendRawTransaction: its provider does not."""
        sent = self._take()
        provider = self.w3[BARE].provider
        for chunk in self._chunks(sent):
            answers = provider.make_batch_request([("eth_sendRawTransaction", [raw])
                                                   for _, raw in chunk])
            assert isinstance(answers, list), answers
            assert [a.get("result") for a in answers] == [h for h, _ in chunk], answers[:3]
        return sent

    def sends_ours_single(self) -> list[tuple[str, str]]:
        sent = self._take()
        rpc = self.ours.rpc
        for tx_hash, raw in sent:
            assert rpc.call("eth_sendRawTransaction", [raw]) == tx_hash
        return sent

    def sends_web3_single(self, label: str) -> list[tuple[str, str]]:
        sent = self._take()
        w3 = self.w3[label]
        for tx_hash, raw in sent:
            assert w3.eth.send_raw_transaction(raw).to_0x_hex() == tx_hash
        return sent

    def sends_provider_single(self) -> list[tuple[str, str]]:
        sent = self._take()
        provider = self.w3[BARE].provider
        for tx_hash, raw in sent:
            assert provider.make_request("eth_sendRawTransaction", [raw])["result"] == tx_hash
        return sent

    def logs_ours(self) -> None:
        first, last = self.log_range
        for _ in range(self.queries):
            logs = self.ours.logs(self.token, self.transfer_topic, first, last)
            assert len(logs) == self.log_count, len(logs)

    def logs_web3(self, label: str) -> None:
        first, last = self.log_range
        w3 = self.w3[label]
        token = w3.to_checksum_address(self.token)
        for _ in range(self.queries):
            logs = w3.eth.get_logs({"address": token, "topics": [self.transfer_topic],
                                    "fromBlock": first, "toBlock": last})
            assert len(logs) == self.log_count, len(logs)

    def logs_provider(self) -> None:
        first, last = self.log_range
        provider = self.w3[BARE].provider
        for _ in range(self.queries):
            logs = provider.make_request("eth_getLogs", [{
                "address": self.token, "topics": [self.transfer_topic],
                "fromBlock": hex(first), "toBlock": hex(last)}])["result"]
            assert len(logs) == self.log_count, len(logs)

    def _chunks(self, items: list[Any]) -> list[list[Any]]:
        return [items[i:i + self.batch] for i in range(0, len(items), self.batch)]

    # -- the workloads -----------------------------------------------------------------------
    def workloads(self) -> list[Workload]:
        pending: list[tuple[str, str]] = []

        def sender(fn: Callable[[], list[tuple[str, str]]]) -> Callable[[], None]:
            return lambda: pending.extend(fn())

        def settle() -> None:
            self._settle(pending)
            pending.clear()

        def per_web3(fn: Callable[[str], Any]) -> dict[str, Callable[[], Any]]:
            return {label: functools.partial(fn, label) for label in self.w3}

        return [
            Workload("reads", f"{self.reads:,} balanceOf eth_calls, batches of {self.batch}",
                     self.reads, "calls",
                     {OURS: self.reads_ours, **per_web3(self.reads_web3),
                      "web3 eth.call, our ABI coding": self.reads_web3_eth_call,
                      PROVIDER: self.reads_provider}),
            Workload("sends, batched", f"{self.sends:,} raw txs, batches of {self.batch}",
                     self.sends, "txs",
                     {OURS: sender(self.sends_ours), PROVIDER: sender(self.sends_provider_batch)},
                     after=settle),
            Workload("sends, one by one", f"{self.sends:,} raw txs, a request each",
                     self.sends, "txs",
                     {OURS: sender(self.sends_ours_single),
                      **{k: sender(f) for k, f in per_web3(self.sends_web3_single).items()},
                      PROVIDER: sender(self.sends_provider_single)},
                     after=settle),
            Workload("logs", f"eth_getLogs x{self.queries}, {self.log_count:,} Transfer logs "
                     "each", self.queries * self.log_count, "logs",
                     {OURS: self.logs_ours, **per_web3(self.logs_web3),
                      PROVIDER: self.logs_provider}),
        ]


def run_rounds(workloads: list[Workload], rounds: int, say: Callable[[str], None]) -> None:
    """A warm-up round (untimed: first-use costs such as web3's ABI caches), then ``rounds``
    rounds of every client of every workload, the order rotated by the round."""
    for r in range(-1, rounds):
        for w in workloads:
            labels = list(w.clients)
            labels = labels[r % len(labels):] + labels[:r % len(labels)]
            for label in labels:
                gc.collect()
                started, cpu = time.perf_counter(), time.process_time()
                w.clients[label]()
                if r >= 0:
                    w.times.setdefault(label, []).append(time.perf_counter() - started)
                    w.cpu.setdefault(label, []).append(time.process_time() - cpu)
                if w.after is not None:
                    w.after()
        say("warm-up round done" if r < 0 else f"round {r + 1}/{rounds} done")


TABLE_HEADERS = ["workload", "work", "client", "median ms", "best ms", "rate (median)",
                 "web3 / ours (time: median, range)", "client CPU ms",
                 "web3 / ours (CPU: median, range)"]


def table_cells(row: dict[str, Any]) -> list[str]:
    """A row of the printed (and README) table."""
    ours = row["client"] == OURS
    return [row["workload"], row["work"] if ours else "", row["client"],
            f"{row['median_ms']:,.1f}", f"{row['best_ms']:,.1f}",
            f"{row['rate']:,.0f} {row['unit']}",
            "1.00x (baseline)" if ours else
            f"{row['ratio']:.2f}x ({row['ratio_min']:.2f}-{row['ratio_max']:.2f})",
            f"{row['cpu_ms']:,.1f}",
            "1.00x" if ours else
            f"{row['cpu_ratio']:.2f}x ({row['cpu_ratio_min']:.2f}-{row['cpu_ratio_max']:.2f})"]


def table_notes(document: dict[str, Any]) -> list[str]:
    """The lines under the table: each tier's ratios and the verdict."""
    return ["web3 / ours, each workload's best web3 client (time; under 1 is web3 faster):",
            *document["verdict"]]


def report(workloads: list[Workload]) -> tuple[list[dict[str, Any]],
                                                dict[str, dict[str, float]]]:
    """Rows (numbers: times in ms, ratios to ours per round as median, min and max), and per
    tier (web3's API; its HTTPProvider alone) each workload's best median ratio to ours (a
    workload the tier cannot do is missing)."""
    rows: list[dict[str, Any]] = []
    best: dict[str, dict[str, float]] = {API_TIER: {}, PROVIDER_TIER: {}}
    for w in workloads:
        ours, ours_cpu = w.times[OURS], w.cpu[OURS]
        for label, times in w.times.items():
            med = statistics.median(times)
            ratios = [t / o for t, o in zip(times, ours, strict=True)]
            cpu = w.cpu[label]
            cpu_ratios = [c / max(o, 1e-6) for c, o in zip(cpu, ours_cpu, strict=True)]
            rows.append({"workload": w.key, "work": w.name, "client": label,
                         "units": w.units, "median_ms": med * 1000,
                         "best_ms": min(times) * 1000, "rate": w.units / med,
                         "unit": f"{w.unit}/s", "ratio": statistics.median(ratios),
                         "ratio_min": min(ratios), "ratio_max": max(ratios),
                         "cpu_ms": statistics.median(cpu) * 1000,
                         "cpu_ratio": statistics.median(cpu_ratios),
                         "cpu_ratio_min": min(cpu_ratios), "cpu_ratio_max": max(cpu_ratios),
                         "times_s": times, "cpu_s": cpu})
            if label != OURS:
                tier = best[PROVIDER_TIER if label == PROVIDER else API_TIER]
                tier[w.key] = min(tier.get(w.key, float("inf")), statistics.median(ratios))
    return rows, best


def verdict(workloads: list[Workload], best: dict[str, dict[str, float]]) -> list[str]:
    """Issue 20's rule, over web3.py as its users call it; the provider alone beside it."""
    lines = []
    for tier, ratios in best.items():
        figures = ", ".join(f"{w.key} {ratios[w.key]:.2f}x" if w.key in ratios else
                            f"{w.key}: cannot" for w in workloads)
        within = len(ratios) == len(workloads) and max(ratios.values()) <= SWITCH_WITHIN
        lines.append(f"{tier}: {figures} -> "
                     + (f"within {SWITCH_WITHIN - 1:.0%} on every workload" if within else
                        f"not within {SWITCH_WITHIN - 1:.0%} on every workload"))
    api = best[API_TIER]
    switch = len(api) == len(workloads) and max(api.values()) <= SWITCH_WITHIN
    lines.append("verdict: " + ("switch the library to web3.py" if switch else
                                "keep ours (web3.py's API is not within 10 % on every "
                                "workload)"))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=1000, help="balanceOf calls per round")
    parser.add_argument("--sends", type=int, default=500, help="raw transactions per client "
                        "and round")
    parser.add_argument("--logs", type=int, default=5000, help="Transfer logs in the queried "
                        "range")
    parser.add_argument("--batch", type=int, default=500, help="requests per JSON-RPC batch")
    parser.add_argument("--queries", type=int, default=1, help="eth_getLogs per client and "
                        "round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--default-middleware", action="store_true",
                        help="also time web3's API with its default middleware (slower than "
                             "without: not its best configuration)")
    parser.add_argument("--dir-root", default=None)
    add_json_option(parser)
    args = parser.parse_args()
    record = Record("node_client")

    def say(text: str) -> None:
        print(f"-- {text}", file=sys.stderr, flush=True)

    work = Path(tempfile.mkdtemp(prefix="cic-bench-client-", dir=args.dir_root))
    bench = None
    try:
        bench = Bench(work, args.reads, args.sends, args.logs, args.batch, args.queries,
                      args.rounds, say, default_middleware=args.default_middleware)
        workloads = bench.workloads()
        run_rounds(workloads, args.rounds, say)
    finally:
        if bench is not None:
            bench.close()
        shutil.rmtree(work, ignore_errors=True)
    rows, best = report(workloads)
    version = importlib.metadata.version
    print(f"node client benchmark on {machine()}; web3 {version('web3')}, requests "
          f"{version('requests')}; {args.rounds} rounds")
    print(table(TABLE_HEADERS, [table_cells(r) for r in rows]))
    document = record.document(
        rows, rounds=args.rounds, verdict=verdict(workloads, best), best=best,
        options={k: getattr(args, k) for k in ("reads", "sends", "logs", "batch", "queries",
                                               "rounds", "default_middleware", "dir_root")})
    print("\n".join(table_notes(document)))
    if args.json:
        Record.write(args.json, document)

if __name__ == "__main__":
    main()
