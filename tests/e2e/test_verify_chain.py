"""The verifier against a real seeded devnet: all pass, then each kind of tampering is caught by
exact count and exact addresses, in the result and in every output of ``verify.py``."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cic_devnet.anvil import rpc
from cic_devnet.devnet import Devnet
from cic_seeding.chain.batch_reader import BatchReaderChain
from cic_seeding.chain.client import ChainClient
from cic_seeding.chain.connect import connect, verify_chain
from cic_seeding.chain.registry import ACCOUNTS_INDEX, TOKEN
from cic_seeding.chain.rpc import JsonRpc
from cic_seeding.chain.signer import Signer
from cic_seeding.chain.tx import Call
from cic_seeding.config import Settings
from cic_seeding.datadir import DataDir, keyfile_path
from cic_seeding.generate.generator import GenerateOptions, generate
from cic_seeding.generate.keys import derive_private_key
from cic_seeding.importers.eth import EthImporter
from cic_seeding.state import open_state_store
from cic_seeding.sync.run import run_sync
from cic_seeding.sync.syncer import SyncOptions
from cic_seeding.units import dataset_to_token_exact
from cic_seeding.verify import (
    NOT_IMPORTED,
    VerifyOptions,
    VerifyResult,
    connect_chain,
    run_verify,
)
from tests.e2e.test_eth_pipeline import seed_users
from tests.helpers import run_script

COUNT = 40
SEED = 6060
RAN = ("accounts_index", "balance", "faucet", "gas", "imported", "local_key")
META = ("metadata", "metadata_custom", "metadata_phone", "metadata_preferences")


@dataclass
class Seeded:
    settings: Settings
    devnet: Devnet
    users: list[str]  # 0x lower-case, index order
    clean: VerifyResult
    #: check id -> the users its tampering should fail
    tampered: dict[str, list[str]]


def import_and_sync(settings: Settings, limit: int | None = None) -> None:
    importer = EthImporter(settings)
    try:
        assert importer.run(limit=limit).confirmed == (limit or COUNT)
    finally:
        importer.close()
    assert run_sync(settings, "eth", SyncOptions(timeout=60, poll=0.1)).ok


def user_client(devnet: Devnet, index: int) -> ChainClient:
    key = derive_private_key(SEED, index)
    return ChainClient(JsonRpc(devnet.rpc_url), signer=Signer.from_key(key), explicit_mining=True)


def drain_gas(devnet: Devnet, index: int, to: str) -> None:
    """Send all of the user's native balance but the exact fee away, from the user's key."""
    client = user_client(devnet, index)
    assert client.signer is not None
    price = client.gas_price()
    balance = client.native_balances([client.signer.address])[0]
    signed = client.signer.sign(Call(to, b"", value=balance - 21_000 * price, gas=21_000),
                                nonce=client.pending_nonce(), gas_price=price,
                                chain_id=client.chain_id)
    assert client.broadcast([signed.raw]) == [None]
    assert client.wait([signed.tx_hash])[signed.tx_hash].ok


def tamper(seeded: Seeded) -> None:
    """Per kind of damage, chosen users (each user damaged once): see ``seeded.tampered``."""
    devnet, users, settings = seeded.devnet, seeded.users, seeded.settings
    deployer = connect(settings)
    token = deployer.token().address
    sink = deployer.client.signer.address  # type: ignore[union-attr]
    for index, amount in ((0, 1), (1, 3)):  # tokens moved away by the users themselves
        user_client(devnet, index).transact(Call(token, TOKEN.encode("transfer", sink, amount)),
                                            "move tokens away")
    deployer.client.transact(Call(deployer.accounts_index,
                                  ACCOUNTS_INDEX.encode("remove", users[2])), "unregister")
    keyfile_path(DataDir(settings.data_dir).keystore, users[3]).unlink()
    drain_gas(devnet, 4, sink)
    rpc(devnet.rpc_url, "anvil_setBalance", [users[5], "0x0"])
    seeded.tampered = {"accounts_index": [users[2]], "balance": users[:2], "faucet": [],
                       "gas": users[4:6], "imported": [], "local_key": [users[3]]}


@pytest.fixture(scope="module")
def seeded(module_devnet: Devnet, tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    settings = seed_users(module_devnet, tmp_path_factory.mktemp("verify"), COUNT, seed=SEED)
    import_and_sync(settings)
    users = [u.address.lower() for u in DataDir(settings.data_dir).users()]
    result = Seeded(settings, module_devnet, users, run_verify(settings), {})
    tamper(result)
    return result


def test_a_clean_seeding_passes_every_check(seeded: Seeded) -> None:
    clean = seeded.clean
    assert clean.ok, clean.render_text()
    assert {c: (r.ok, r.total) for c, r in clean.checks.items() if c in RAN} == {
        c: (COUNT, COUNT) for c in RAN}
    for c in META:  # no metadata server configured: skipped, and said why
        assert clean.checks[c].skipped_because is not None
        assert "no metadata server is configured" in clean.checks[c].skipped_because
    assert clean.not_applicable() == {c: "sovereign users"
                                      for c in ("custodial_key", "ussd", "ussd_pins")}


def test_tampering_is_caught_by_exact_count_and_address(seeded: Seeded) -> None:
    result = run_verify(seeded.settings)
    assert not result.ok
    for cid, bad in seeded.tampered.items():
        check = result.checks[cid]
        assert (check.failed, check.ok) == (len(bad), COUNT - len(bad)), cid
        assert [f.address for f in check.failures] == bad, cid
    reasons = {cid: result.checks[cid].failures[0].reason for cid, bad in
               seeded.tampered.items() if bad}
    assert reasons == {
        "accounts_index": "the AccountsIndex does not have the user",
        "balance": "the token balance differs from the expected amount",
        "gas": "the user has no gas: its native balance is 0 wei",
        "local_key": "there is no keyfile for the user under keystore/"}


def test_the_report_reads_like_a_diagnosis(seeded: Seeded) -> None:
    """The tampered world's text report: one line per check and reason, counted, naming the
    users with their particulars (the balance check: two users, one reason)."""
    result = run_verify(seeded.settings)
    u = seeded.users
    text = result.render_text().splitlines()
    failures = text[text.index("failures:") + 1:-1]

    def balance(i: int, moved: int) -> str:
        data = DataDir(seeded.settings.data_dir)
        opening = dataset_to_token_exact(data.balances()[u[i][2:]], data.manifest().decimals,
                                         result.token_decimals or 0)
        faucet = result.faucet_amount
        assert faucet is not None and opening is not None
        want = opening + faucet
        return f"{u[i]}: expected {want} (opening {opening} + faucet {faucet}), found " \
               f"{want - moved}"

    assert failures == [
        f"  accounts_index: 1 user -- the AccountsIndex does not have the user ({u[2]})",
        f"  balance: 2 users -- the token balance differs from the expected amount "
        f"({balance(0, 1)}; {balance(1, 3)})",
        f"  gas: 2 users -- the user has no gas: its native balance is 0 wei ({u[4]}, {u[5]})",
        f"  local_key: 1 user -- there is no keyfile for the user under keystore/ "
        f"({u[3]}: keystore/{u[3][2:]}.json)"]
    assert text[-1] == (f"{COUNT} users of token {result.token_symbol}, 6 checks (eth import): "
                        "FAILED: 6 failures in 4 checks")


def test_both_readers_see_the_same_chain(seeded: Seeded) -> None:
    """BatchReader by state override (the default; anvil runs it) and one JSON-RPC eth_call
    per address agree on every verdict."""
    fast = connect_chain(seeded.settings)
    assert isinstance(fast, BatchReaderChain) and fast.overrides
    options = VerifyOptions(include=("accounts_index", "balance", "faucet", "gas"),
                            batch_size=7)
    by_override = run_verify(seeded.settings, options, chain=fast)
    per_address = run_verify(seeded.settings, options, chain=verify_chain(seeded.settings))
    for cid, c in by_override.checks.items():
        other = per_address.checks[cid]
        assert (c.ok, c.failed, c.failures) == (other.ok, other.failed, other.failures), cid
        assert [f.address for f in c.failures] == seeded.tampered[cid]


class _Report(HTMLParser):
    """Rows of the HTML report's check table and failure lists, by their data attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.checks: dict[str, dict[str, str]] = {}
        self.failures: dict[str, list[str]] = {}
        self._failure: str | None = None
        self._cells: list[str] = []
        self.svg: list[str] = []  # ids of the inline charts

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "tr" and "data-ok" in a:
            self.checks[a["data-check"]] = a
        if tag == "tr" and a.get("class") == "failure":
            self._failure, self._cells = a["data-check"], []
        if tag == "svg":
            self.svg.append(a.get("id", ""))

    def handle_data(self, data: str) -> None:
        if self._failure is not None:
            self._cells.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr" and self._failure is not None:
            self.failures.setdefault(self._failure, []).append(self._cells[0])
            self._failure = None


def test_every_output_of_the_script_names_exactly_the_tampered_users(
        seeded: Seeded, tmp_path: Path) -> None:
    data, devnet = seeded.settings.data_dir, str(seeded.devnet.directory)
    out = run_script("verify.py", data, "--devnet", devnet, "--format", "json")
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    for cid, bad in seeded.tampered.items():
        assert report["checks"][cid]["failed"] == len(bad), cid
        assert [f["address"] for f in report["checks"][cid]["failures"]] == bad, cid

    junit, results, html = tmp_path / "junit.xml", tmp_path / "results", tmp_path / "r.html"
    run = run_script("verify.py", data, "--devnet", devnet, "--format", "junit", "--output",
                     str(junit), "--results-dir", str(results), "--report", str(html))
    assert run.returncode == 1, run.stderr
    suite = ET.parse(junit).getroot()
    failing = {c.get("name") for c in suite.findall("testcase") if c.find("failure") is not None}
    assert failing == {cid for cid, bad in seeded.tampered.items() if bad}
    assert suite.get("failures") == str(len(failing))
    skipped = {c.get("name") for c in suite.findall("testcase") if c.find("skipped") is not None}
    assert skipped == {c for c, r in seeded.clean.checks.items() if r.skipped_because}
    assert skipped >= set(META) and suite.get("skipped") == str(len(skipped))
    for cid, bad in seeded.tampered.items():
        errors = (results / f"error_{cid}").read_text().splitlines()
        assert [line.split(" ", 1)[0] for line in errors] == bad, cid
        passed = (results / f"success_{cid}").read_text().splitlines()
        assert passed == [u for u in seeded.users if u not in bad], cid
    assert not any((results / f"error_{cid}").exists() for cid in META)

    parsed = _Report()
    parsed.feed(html.read_text())
    assert set(parsed.checks) == set(seeded.clean.checks) >= set(RAN) | set(META)
    for cid, bad in seeded.tampered.items():
        row = parsed.checks[cid]
        assert (row["data-failed"], row["data-ok"], row["data-total"]) == (
            str(len(bad)), str(COUNT - len(bad)), str(COUNT))
        assert parsed.failures.get(cid, []) == bad
    assert parsed.svg.count("balance-histogram") == 1  # (and the run's timeline beside it)


@pytest.mark.parametrize("adjust,failing", [
    # users 0 and 1 hold 1 and 3 smallest units (6 decimals) less than expected
    ("0.000003", []), ("0.000002", [1]), ("±0.000003", []),
    ("-0.000003", []), ("-0.000002", [1]), ("-0.000001", [1]), ("-0.000000", [0, 1]),
    ("+0.000003", [0, 1]),
    ("0%", [0, 1]),
])
def test_balance_adjust_bounds_on_chain(seeded: Seeded, adjust: str, failing: list[int]) -> None:
    result = run_verify(seeded.settings, VerifyOptions(include=("balance",),
                                                       balance_adjust=adjust))
    assert [f.address for f in result.checks["balance"].failures] == [
        seeded.users[i] for i in failing]


def test_users_never_imported_and_foreign_users_are_reported(module_devnet: Devnet,
                                                             tmp_path: Path) -> None:
    settings = seed_users(module_devnet, tmp_path, 9, seed=1212)
    importer = EthImporter(settings)
    try:
        assert importer.run().confirmed == 9
    finally:
        importer.close()
    assert run_sync(settings, "eth", SyncOptions(timeout=60, poll=0.1)).ok
    # three users join the data directory after the import: the importer never saw them
    generate(GenerateOptions(directory=Path(settings.data_dir), count=3, seed=1212,
                             mode="append", workers=1))
    users = [u.address.lower() for u in DataDir(settings.data_dir).users()]
    assert len(users) == 12

    result = run_verify(settings, VerifyOptions(exclude=("local_key",)))
    imported = result.checks["imported"]
    assert (imported.ok, imported.failed) == (9, 3)
    assert [f.address for f in imported.failures] == users[9:]
    assert imported.failures[0].reason.startswith(
        "never imported: importer 'eth' has no record of the user")
    for cid in ("accounts_index", "balance", "faucet", "gas"):  # nothing to read for them
        assert [(f.address, f.reason) for f in result.checks[cid].failures] == [
            (u, NOT_IMPORTED) for u in users[9:]]

    # the state store also holds users this data directory does not have
    with open_state_store(settings) as store:
        store.add_users("eth", [(90, "0x" + "9" * 40), (91, "0x" + "8" * 40)])
    again = run_verify(settings, VerifyOptions(include=("imported",)))
    (problem,) = again.checks["imported"].problems
    assert "holds 2 users of importer 'eth' that the data directory (12 users) does not" \
        in problem
    assert again.failed == 3 + 1 and not again.ok
    out = run_script("verify.py", settings.data_dir, "--include", "imported", "--format",
                     "json")
    assert out.returncode == 1
    doc = json.loads(out.stdout)["checks"]["imported"]
    assert doc["failed"] == 3 and len(doc["problems"]) == 1
