"""The engine's plain functions on real PostgreSQL and anvil (no worker, no broker).

Idempotent account creation, keys encrypted at rest, the passphrase check, transfers and
balances, and the queue's handling of each class of refused or failed transaction.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading

import pytest

from cic_devnet.custodial.config import engine_config
from cic_devnet.custodial.engine import open_engine
from cic_devnet.custodial.keys import new_key
from cic_devnet.devnet import BLOCK_GAS_LIMIT
from cic_seeding.chain.client import ChainClient
from cic_seeding.chain.registry import ACCOUNTS_INDEX, FAUCET, TOKEN
from cic_seeding.chain.rpc import JsonRpc
from cic_seeding.chain.tx import Call
from cic_seeding.config import load_settings
from cic_seeding.errors import CustodialError, CustodialKeyError
from tests.custodial.world import Harness, deployer, pump


def _tx(harness: Harness, request_id: str) -> tuple[str, str | None, int, int]:
    ((status, error_class, attempts, gas),) = harness.sql(
        "SELECT status, error_class, attempts, gas FROM txs WHERE request_id = %s",
        (request_id,))
    return status, error_class, attempts, gas


def test_create_is_idempotent_and_registers_on_chain(module_harness: Harness) -> None:
    engine = module_harness.engine()
    first = engine.create_account("0xAbC0000000000000000000000000000000000001")
    again = engine.create_account("0xabc0000000000000000000000000000000000001")
    assert first["created"] and not again["created"]
    assert again["address"] == first["address"] and again["txs"] == first["txs"]
    pump(engine)
    index = engine.network.accounts_index
    assert engine.network.client.call(index, ACCOUNTS_INDEX.fn("have"), first["address"])
    assert module_harness.count("SELECT count(*) FROM accounts WHERE request_id = "
                                "'0xabc0000000000000000000000000000000000001'") == 1
    assert _tx(module_harness, "0xabc0000000000000000000000000000000000001")[:3] == (
        "mined", None, 1)
    stranger = new_key()[1]
    assert engine.have([first["address"], stranger]) == {first["address"]: True,
                                                         stranger: False}
    with pytest.raises(CustodialError, match="request id .* is not"):
        engine.create_account("")


def test_keys_in_postgresql_are_encrypted(module_harness: Harness) -> None:
    engine = module_harness.engine()
    made = [engine.create_account(f"sealed-{i}")["address"] for i in range(5)]
    pump(engine)
    dump = "".join(str(row) for table in ("accounts", "txs", "engine_meta", "nonces")
                   for row in module_harness.sql(f"SELECT t::text FROM {table} t")).lower()
    rows = dict(module_harness.sql("SELECT address, sealed_key FROM accounts "
                                   "WHERE request_id LIKE 'sealed-%%'"))
    assert sorted(rows) == sorted(made)
    for address, sealed in rows.items():
        key = engine.keys.open(bytes(sealed), address.encode())
        assert engine.signer_for(address).address.lower() == address  # it is the real key
        assert key.hex() not in dump and key not in bytes(sealed)
    assert len({bytes(s) for s in rows.values()}) == 5


def test_a_wrong_passphrase_is_refused(module_harness: Harness) -> None:
    module_harness.engine()  # the database exists with its passphrase
    env = {**module_harness.setup.env, "CIC_CUSTODIAL_PASSPHRASE": "not the passphrase"}
    with pytest.raises(CustodialKeyError, match="not the one they were sealed with"):
        open_engine(engine_config(load_settings({}, config_file=None, environ=env)))


def test_gas_gift_faucet_transfer_and_balance(module_harness: Harness) -> None:
    engine = module_harness.engine()
    rich = engine.create_account("rich", gas_gift=10**16, faucet=True)
    poor = engine.create_account("poor")
    assert set(rich["txs"]) == {"register", "gas", "faucet"}
    pump(engine)
    amount = engine.network.client.call(engine.network.faucet, FAUCET.fn("tokenAmount"))
    assert {k: engine.balance(rich["address"])[k] for k in ("balance", "native")} == {
        "balance": amount, "native": 10**16}
    sent = engine.transfer(rich["address"], poor["address"], 1234, request_id="pay-1")
    assert engine.transfer(rich["address"], poor["address"], 1234,
                           request_id="pay-1")["tx_id"] == sent["tx_id"]
    pump(engine)
    assert engine.balance(poor["address"])["balance"] == 1234
    assert engine.balance(rich["address"])["balance"] == amount - 1234
    (status,) = engine.tx_status([sent["tx_id"]])
    assert status["status"] == "mined" and status["signer"] == rich["address"]
    with pytest.raises(CustodialError, match="holds no key"):
        engine.transfer(new_key()[1], poor["address"], 1)


def test_nonce_used_by_someone_else_is_signed_again(module_harness: Harness) -> None:
    engine = module_harness.engine()
    pump(engine)
    outsider = ChainClient(JsonRpc(module_harness.devnet.rpc_url), signer=engine.signer,
                           explicit_mining=True)  # the engine's key, used outside the engine
    outsider.transact(Call(engine.signer.address, b"", 0, 21_000), "taking a nonce")
    engine.create_account("nonce-taken")
    pump(engine)
    assert _tx(module_harness, "nonce-taken")[:3] == ("mined", "nonce_too_low", 2)


def test_underpriced_and_intrinsic_gas_are_signed_again(module_harness: Harness) -> None:
    engine = module_harness.engine()
    me = engine.signer.address
    with engine.storage.transaction() as cur:
        engine.queue.enqueue(cur, engine.signer, Call(me, b"", 0, 21_000), kind="test",
                             request_id="cheap", gas_price=1)
        engine.queue.enqueue(cur, engine.signer, Call(me, b"", 0, 20_000), kind="test",
                             request_id="thin")
    pump(engine)
    assert _tx(module_harness, "cheap")[:3] == ("mined", "underpriced", 2)
    assert _tx(module_harness, "thin") == ("mined", "out_of_gas", 2, 40_000)


def test_out_of_gas_on_chain_is_sent_again_with_more_gas(module_harness: Harness) -> None:
    engine = module_harness.engine()
    someone = new_key()[1]
    call = Call(engine.network.accounts_index, ACCOUNTS_INDEX.encode("add", someone),
                gas=30_000)
    with engine.storage.transaction() as cur:
        engine.queue.enqueue(cur, engine.signer, call, kind="register", subject=someone,
                             request_id="starved")
    pump(engine)
    status, error_class, attempts, gas = _tx(module_harness, "starved")
    assert (status, error_class) == ("mined", "out_of_gas") and attempts >= 2 and gas > 30_000
    assert engine.network.client.call(engine.network.accounts_index,
                                      ACCOUNTS_INDEX.fn("have"), someone)


def test_no_funds_fails_clearly_and_gives_the_nonce_back(module_harness: Harness) -> None:
    engine = module_harness.engine()
    broke = engine.create_account("broke")["address"]
    pump(engine)
    first = engine.transfer(broke, engine.signer.address, 1, request_id="broke-1")
    pump(engine)
    ((status, error_class, error),) = module_harness.sql(
        "SELECT status, error_class, error FROM txs WHERE id = %s", (first["tx_id"],))
    assert (status, error_class) == ("failed", "insufficient_funds")
    assert "nsufficient funds" in error
    # gas and a token for the account: its next transaction takes the nonce given back
    token = engine.network.token()
    funder = deployer(module_harness.devnet)
    funder.transact(Call(broke, b"", 10**16, 21_000), "gas for the account")
    funder.transact(Call(token.address, TOKEN.encode("transfer", broke, 5), gas=90_000),
                    "a token for the account")
    second = engine.transfer(broke, engine.signer.address, 1, request_id="broke-2")
    assert second["nonce"] == first["nonce"] == 0
    pump(engine)
    assert engine.tx_status([second["tx_id"]])[0]["status"] == "mined"


def test_an_unknown_signer_and_a_bad_address_are_refused(module_harness: Harness) -> None:
    engine = module_harness.engine()
    with pytest.raises(CustodialError, match="is not an address"):
        engine.have(["0x1234"])
    with pytest.raises(CustodialError, match="not a positive integer"):
        engine.transfer(engine.signer.address, new_key()[1], 0)
    assert dataclasses.is_dataclass(engine)
    assert secrets.compare_digest(engine.status()["signer"], engine.signer.address.lower())


def test_a_rejected_transaction_leaves_no_nonce_gap(module_harness: Harness) -> None:
    engine = module_harness.engine()
    pump(engine)
    me = engine.signer.address
    with engine.storage.transaction() as cur:
        bad = engine.queue.enqueue(cur, engine.signer, Call(me, b"", 0, 21_000), kind="test",
                                   request_id="wrong-chain")
        engine.queue.enqueue(cur, engine.signer, Call(me, b"", 0, 21_000), kind="test",
                             request_id="behind-it")
        row = engine.queue.load(cur, bad)  # re-signed above the block gas limit: refused
        other = engine.signer.sign(row.call(gas=2 * BLOCK_GAS_LIMIT), nonce=row.nonce,
                                   gas_price=row.gas_price, chain_id=engine.chain_id)
        cur.execute("UPDATE txs SET raw = %s, tx_hash = %s WHERE id = %s",
                    (other.raw, other.tx_hash, bad))
    pump(engine)
    ((status, error_class, nonce),) = module_harness.sql(
        "SELECT status, error_class, nonce FROM txs WHERE id = %s", (bad,))
    assert (status, error_class) == ("failed", "rejected")
    # a filler took the nonce, so the transaction queued behind it was mined
    assert module_harness.sql("SELECT status FROM txs WHERE kind = 'filler' AND nonce = %s "
                              "AND signer = %s", (nonce, me.lower())) == [("mined",)]
    assert _tx(module_harness, "behind-it")[:2] == ("mined", None)


def test_a_dropped_transaction_is_signed_again(module_harness: Harness) -> None:
    engine = module_harness.engine()
    pump(engine)
    me = engine.signer.address
    with engine.storage.transaction() as cur:
        id_ = engine.queue.enqueue(cur, engine.signer, Call(me, b"", 0, 21_000), kind="test",
                                   request_id="dropped")
        row = engine.queue.load(cur, id_)  # signed for another chain: anvil takes it and
        lost = engine.signer.sign(row.call(), nonce=row.nonce,  # silently drops it
                                  gas_price=row.gas_price, chain_id=1)
        cur.execute("UPDATE txs SET raw = %s, tx_hash = %s WHERE id = %s",
                    (lost.raw, lost.tx_hash, id_))
    pump(engine)
    assert _tx(module_harness, "dropped")[:3] == ("mined", "dropped", 2)
    ((replaced,),) = module_harness.sql("SELECT replaced FROM txs WHERE id = %s", (id_,))
    assert replaced == [lost.tx_hash]


def test_create_many_registers_first_and_matches_single_creates(module_harness: Harness
                                                               ) -> None:
    """One transaction for a batch: every registration's nonce before every gas gift's and
    faucet payout's; each account as account.create would answer it afterwards."""
    engine = module_harness.engine()
    pump(engine)
    ids = [f"batch-{i}" for i in range(5)]
    replies = engine.create_accounts([{"request_id": r, "gas_gift": 10**15, "faucet": True}
                                      for r in ids])
    assert [r["request_id"] for r in replies] == ids and all(r["created"] for r in replies)
    nonces = dict(((kind, rid), n) for kind, rid, n in module_harness.sql(
        "SELECT kind, request_id, nonce FROM txs WHERE request_id LIKE 'batch-%%'"))
    by_kind = {k: sorted(n for (kind, _), n in nonces.items() if kind == k)
               for k in ("register", "gas", "faucet")}
    assert max(by_kind["register"]) < min(by_kind["gas"]) and \
        max(by_kind["gas"]) < min(by_kind["faucet"])
    assert sorted(nonces.values()) == list(range(min(nonces.values()),
                                                 min(nonces.values()) + 15))
    pump(engine)
    for reply in replies:
        again = engine.create_account(reply["request_id"], gas_gift=10**15, faucet=True)
        assert again == {**reply, "created": False}
        assert engine.network.client.call(engine.network.accounts_index,
                                          ACCOUNTS_INDEX.fn("have"), reply["address"])
    assert engine.balance(replies[0]["address"])["native"] == 10**15


def test_create_many_queues_a_failed_registration_again(module_harness: Harness) -> None:
    engine = module_harness.engine()
    pump(engine)
    first = engine.create_account("failed-before")
    with engine.storage.transaction() as cur:  # re-signed above the block gas limit: refused
        row = engine.queue.load(cur, first["txs"]["register"])
        other = engine.signer.sign(row.call(gas=2 * BLOCK_GAS_LIMIT), nonce=row.nonce,
                                   gas_price=row.gas_price, chain_id=engine.chain_id)
        cur.execute("UPDATE txs SET raw = %s, tx_hash = %s WHERE id = %s",
                    (other.raw, other.tx_hash, row.id))
    pump(engine)
    assert _tx(module_harness, "failed-before")[:2] == ("failed", "rejected")
    replies = engine.create_accounts([{"request_id": "failed-before"},
                                      {"request_id": "fresh-after"}])
    assert replies[0] == {**first, "created": False}  # the same account and transaction row
    assert _tx(module_harness, "failed-before")[:2] == ("queued", "retry")
    pump(engine)
    assert _tx(module_harness, "failed-before")[0] == "mined"
    for reply in replies:
        assert engine.network.client.call(engine.network.accounts_index,
                                          ACCOUNTS_INDEX.fn("have"), reply["address"])


def test_concurrent_batches_of_the_same_requests_make_one_account_each(
        module_harness: Harness) -> None:
    """Four threads send overlapping batches in different orders at once: no deadlock, one
    account and one registration per request id, every thread told the same address."""
    engine = module_harness.engine()
    ids = [f"race-{i:02d}" for i in range(20)]
    start = threading.Barrier(4)
    answers: list[dict[str, str]] = []
    lock = threading.Lock()

    def create(turn: int) -> None:
        mine = ids[turn * 5:] + ids[:turn * 5]  # each thread its own order
        start.wait()
        replies = engine.create_accounts([{"request_id": r} for r in mine[::-1 if turn % 2
                                                                           else 1]])
        with lock:
            answers.append({r["request_id"]: r["address"] for r in replies})

    threads = [threading.Thread(target=create, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
        assert not t.is_alive()
    assert len(answers) == 4 and all(a == answers[0] for a in answers)
    assert module_harness.sql("SELECT count(*), count(DISTINCT address) FROM accounts "
                              "WHERE request_id LIKE 'race-%%'") == [(20, 20)]
    assert module_harness.count("SELECT count(*) FROM txs WHERE request_id LIKE 'race-%%'") \
        == 20
    pump(engine)
