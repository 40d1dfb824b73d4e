"""Issue 4's bad input on a real devnet: a corrupt record, an address someone else registered,
a signer without tokens and an RPC node that goes away mid-run. Each gives a clear message and
the other users proceed (or resume on a rerun)."""

from __future__ import annotations

from pathlib import Path

from cic_devnet import anvil
from cic_devnet.devnet import Devnet, devnet_up
from cic_seeding.chain.client import ChainClient
from cic_seeding.chain.connect import connect
from cic_seeding.chain.registry import ACCOUNTS_INDEX, TOKEN
from cic_seeding.chain.rpc import JsonRpc
from cic_seeding.chain.signer import Signer
from cic_seeding.chain.tx import Call
from cic_seeding.datadir import DataDir
from cic_seeding.importers.eth import EthImporter
from cic_seeding.sync.run import run_sync
from cic_seeding.sync.syncer import SyncOptions
from tests.conftest import devnet_settings
from tests.e2e.chain_check import read_ledger
from tests.e2e.ledger import Holdings, assert_paid_exactly_once, index_add, make_data
from tests.e2e.procs import clean_env, running, seed_args, users_in, wait_for
from tests.helpers import free_port


def lines(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_a_corrupt_record_fails_that_user_only(module_devnet: Devnet, tmp_path: Path) -> None:
    settings = make_data(module_devnet, tmp_path, 40, seed=51)
    data = DataDir(settings.data_dir)
    bad = list(data.users())[7].address
    path = data.src.path(bad)
    original = path.read_bytes()
    path.write_bytes(b'{"vcard": "BEGIN:VCARD", broken')

    args = seed_args(Path(settings.data_dir), module_devnet)
    with running("eth/seed.py", *args, cwd=tmp_path) as seed:
        assert seed.wait(60) == 1, seed.report()
    assert "Traceback" not in seed.stderr
    failed = lines(seed.stdout.strip(), "  failed ")
    assert len(failed) == 1 and bad.lower() in failed[0], seed.report()
    assert str(path) in failed[0] and "not valid JSON" in failed[0], failed[0]
    assert "39 users imported" in seed.stdout and "1 failed" in seed.stdout

    ledger = read_ledger(settings)
    assert ledger.index_entries == 39
    assert {u for u, r in ledger.registered.items() if not r} == {bad}
    sync = run_sync(settings, "eth", SyncOptions(timeout=1.0, poll=0.05))
    assert sync.done == 39 and sync.waiting == 1 and not sync.ok, sync.render_text()
    ledger = read_ledger(settings)
    assert set(ledger.wrong_balances()) == {bad} and ledger.balances[bad] == 0

    path.write_bytes(original)  # fixed: a rerun imports the one left and pays it
    with running("eth/seed.py", *args, cwd=tmp_path) as seed:
        assert seed.wait(60) == 0, seed.report()
    assert run_sync(settings, "eth", SyncOptions(timeout=30, poll=0.05)).ok
    assert_paid_exactly_once(settings)


def test_an_address_registered_by_someone_else_counts_as_registered_and_is_paid_once(
        module_devnet: Devnet, tmp_path: Path) -> None:
    settings = make_data(module_devnet, tmp_path, 40, seed=52)
    taken = list(DataDir(settings.data_dir).users())[3].address
    # another writer of the registry's AccountsIndex registers one of our users first
    network = connect(settings)
    other = Signer.from_key(anvil.dev_key(1))
    anvil.rpc(module_devnet.rpc_url, "anvil_setBalance", [other.address, hex(10**18)])
    network.client.transact(Call(network.accounts_index,
                                 ACCOUNTS_INDEX.encode("addWriter", other.address)), "addWriter")
    someone = ChainClient(JsonRpc(module_devnet.rpc_url), signer=other, explicit_mining=True)
    index_add(type(network)(someone, network.registry), network.accounts_index, taken)
    entries = network.client.call(network.accounts_index, ACCOUNTS_INDEX.fn("entryCount"))

    importer = EthImporter(settings)
    try:
        result = importer.run()
    finally:
        importer.close()
    assert result.ok and result.found_on_chain == 1 and result.confirmed == 39, \
        result.render_text()
    assert network.client.call(network.accounts_index,
                               ACCOUNTS_INDEX.fn("entryCount")) == entries + 39
    sync = run_sync(settings, "eth", SyncOptions(timeout=30, poll=0.05))
    assert sync.ok and sync.done == 40, sync.render_text()
    ledger = read_ledger(settings)
    assert ledger.wrong_balances() == {} and ledger.native[taken] == settings.gas_gift


def test_a_signer_without_tokens_fails_the_opening_balances_clearly(devnet: Devnet,
                                                                   tmp_path: Path) -> None:
    settings = make_data(devnet, tmp_path, 30, seed=53)
    importer = EthImporter(settings)
    try:
        assert importer.run().ok
    finally:
        importer.close()
    network = connect(settings)
    token = network.token()
    sink = Signer.from_key(anvil.dev_key(2))
    held = Holdings.read(network).signer
    network.client.transact(Call(token.address, TOKEN.encode("transfer", sink.address, held)),
                            "emptying the signer")
    assert Holdings.read(network).signer == 0

    args = seed_args(Path(settings.data_dir), devnet, "--timeout", "30", "--poll", "0.05")
    with running("eth/sync.py", *args, cwd=tmp_path) as sync:
        assert sync.wait(60) == 1, sync.report()
    assert "Traceback" not in sync.stderr
    failed = lines(sync.stdout, "  failed ")
    assert failed and all(" fund: " in f for f in failed), sync.report()
    assert all("tokens" in f for f in failed), failed
    ledger = read_ledger(settings)
    assert all(ledger.faucet_used.values())  # the rest of the payments went through
    assert set(ledger.native.values()) == {settings.gas_gift}

    # tokens back: the rerun pays exactly the opening balances that failed
    anvil.rpc(devnet.rpc_url, "anvil_setBalance", [sink.address, hex(10**18)])
    back = ChainClient(JsonRpc(devnet.rpc_url), signer=sink, explicit_mining=True)
    assert network.client.signer is not None
    back.transact(Call(token.address, TOKEN.encode("transfer", network.client.signer.address,
                                                    held)), "returning the tokens")
    with running("eth/sync.py", *args, cwd=tmp_path) as sync:
        assert sync.wait(60) == 0, sync.report()
    assert_paid_exactly_once(settings)


def test_an_rpc_that_goes_away_mid_run_is_one_clear_error_and_a_rerun_resumes(
        tmp_path: Path) -> None:
    directory, state = tmp_path / "devnet", tmp_path / "chain-state.json"
    devnet = devnet_up(directory, state=state)
    try:
        settings = make_data(devnet, tmp_path, 150, seed=54)
        data = Path(settings.data_dir)
        env = clean_env(CIC_RPC_RETRIES="1")
        args = seed_args(data, devnet, "--batch-size", "10")
        with running("eth/seed.py", *args, cwd=tmp_path, env=env) as seed:
            wait_for(lambda: users_in(data, "confirmed") >= 30, timeout=60,
                     what="30 users confirmed", while_alive=seed)
            devnet.stop()  # SIGTERM by pid: anvil writes its state file and exits
            assert seed.wait(60) == 1, seed.report()
        assert "Traceback" not in seed.stderr, seed.report()
        errors = lines(seed.stderr, "error: ")
        assert len(errors) == 1, seed.report()
        assert devnet.rpc_url in errors[0] and "rerun" in errors[0], errors[0]
        assert users_in(data, "confirmed") < 150

        devnet = devnet_up(directory, state=state)  # the node is back (on another port)
        with running("eth/seed.py", *args, cwd=tmp_path, env=env) as seed:
            assert seed.wait(60) == 0, seed.report()
        assert run_sync(devnet_settings(devnet, data), "eth",
                        SyncOptions(timeout=30, poll=0.05)).ok
        assert_paid_exactly_once(devnet_settings(devnet, data))
    finally:
        devnet.stop()


def test_an_rpc_that_is_not_there_is_one_clear_error(module_devnet: Devnet,
                                                     tmp_path: Path) -> None:
    settings = make_data(module_devnet, tmp_path, 5, seed=55)
    url = f"http://127.0.0.1:{free_port()}"
    env = clean_env(CIC_RPC_RETRIES="0")
    for script in ("eth/seed.py", "eth/sync.py"):
        with running(script, *seed_args(Path(settings.data_dir), module_devnet, "-p", url),
                     cwd=tmp_path, env=env) as run:
            assert run.wait(60) == 1, run.report()
        assert "Traceback" not in run.stderr
        errors = lines(run.stderr, "error: ")
        assert len(errors) == 1 and url in errors[0], run.report()
