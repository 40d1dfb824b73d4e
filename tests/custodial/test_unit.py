"""Pure logic of the engine and its client: error classes, sealing keys, replies, settings."""

from __future__ import annotations

import json

import pytest
from eth_utils import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from cic_devnet.custodial.config import engine_config
from cic_devnet.custodial.engine import address_call
from cic_devnet.custodial.keys import KeyBox, new_key
from cic_devnet.custodial.txqueue import (
    FULL_BLOCK,
    INSUFFICIENT_FUNDS,
    MAX_GATHER,
    NONCE_TOO_LOW,
    OUT_OF_GAS,
    QUEUED,
    REJECTED,
    SENT,
    UNDERPRICED,
    QueueLoop,
    classify,
)
from cic_seeding.chain.registry import ACCOUNTS_INDEX, FAUCET
from cic_seeding.config import load_settings
from cic_seeding.custodial import (
    endpoint,
    parse_reply,
    redact,
    unconfigured,
)
from cic_seeding.custodial.client import _from_result_meta
from cic_seeding.errors import ConfigError, CustodialKeyError, CustodialReplyError
from cic_seeding.generate.keys import address_of
from cic_seeding.records.address import checksummed


@pytest.mark.parametrize(("message", "kind"), [
    ("nonce too low", NONCE_TOO_LOW),
    ("nonce too low: next nonce 7, tx nonce 3", NONCE_TOO_LOW),
    ("replacement transaction underpriced", NONCE_TOO_LOW),  # another tx holds our nonce
    ("transaction underpriced", UNDERPRICED),
    ("max fee per gas less than block base fee", UNDERPRICED),
    ("intrinsic gas too low", OUT_OF_GAS),
    ("insufficient funds for gas * price + value", INSUFFICIENT_FUNDS),
    ("Insufficient funds for gas * price + value", INSUFFICIENT_FUNDS),
    ("invalid sender", REJECTED),
])
def test_node_refusals_are_classified(message: str, kind: str) -> None:
    assert classify(message) == kind


def test_sealed_key_opens_only_with_its_passphrase_and_address() -> None:
    key, address = new_key()
    box = KeyBox.derive("right", b"salt" * 4)
    sealed = box.seal(key, address.encode())
    assert key not in sealed and key.hex().encode() not in sealed
    assert box.open(sealed, address.encode()) == key
    with pytest.raises(CustodialKeyError, match="passphrase differs"):
        KeyBox.derive("wrong", b"salt" * 4).open(sealed, address.encode())
    _, other = new_key()
    with pytest.raises(CustodialKeyError):  # a sealed key moved to another account's row
        box.open(sealed, other.encode())
    with pytest.raises(CustodialKeyError, match="empty"):
        KeyBox.derive("", b"salt")


@settings(max_examples=50, deadline=None)
@given(secret=st.binary(min_size=1, max_size=64), aad=st.binary(max_size=40))
def test_seal_open_roundtrip(secret: bytes, aad: bytes) -> None:
    box = KeyBox(b"k" * 32)
    sealed = box.seal(secret, aad)
    assert box.open(sealed, aad) == secret
    assert box.seal(secret, aad) != sealed  # a fresh nonce each time


def test_replies_are_parsed_or_refused_clearly() -> None:
    ok = parse_reply(json.dumps({"task_id": "t1", "task": "x", "status": "ok",
                                 "result": {"address": "0xab"}}))
    assert ok.ok and ok.result == {"address": "0xab"}
    err = parse_reply(json.dumps({"task_id": "t2", "status": "error",
                                  "error": {"type": "CustodialError", "message": "no",
                                            "transient": True}}))
    assert not err.ok and err.error == "CustodialError: no" and err.transient
    with pytest.raises(CustodialReplyError, match="task t3 .*does not understand.*'maybe'"):
        parse_reply(json.dumps({"task_id": "t3", "status": "maybe"}))
    with pytest.raises(CustodialReplyError, match="not JSON"):
        parse_reply(b"\x00garbage")
    with pytest.raises(CustodialReplyError, match="without a task id"):
        parse_reply(json.dumps({"status": "ok", "result": {}}))


def test_celery_result_meta_is_read_as_a_reply() -> None:
    assert _from_result_meta("t", json.dumps({"status": "PENDING"}).encode()) is None
    ok = _from_result_meta("t", json.dumps({"status": "SUCCESS", "result": {"a": 1}}).encode())
    assert ok is not None and ok.ok and ok.result == {"a": 1}
    failed = _from_result_meta("t", json.dumps({
        "status": "FAILURE", "result": {"exc_type": "CustodialError", "exc_message": ["boom"]}
    }).encode())
    assert failed is not None and not failed.ok and failed.error == "CustodialError: boom"


def test_client_settings_and_redaction() -> None:
    plain = load_settings({}, config_file=None, environ={})
    assert endpoint(plain) == ("redis://127.0.0.1:6379/0", "cic_custodial")
    assert "no custodial engine is configured" in (unconfigured(plain) or "")
    given_ = plain.replace(custodial_broker_url="redis://h:1/2", custodial_queue="q")
    assert endpoint(given_) == ("redis://h:1/2", "q") and unconfigured(given_) is None
    assert redact("postgresql://u:secret@h/db") == "postgresql://u:****@h/db"
    assert redact("redis://h:6379/0") == "redis://h:6379/0"


def test_engine_config_names_what_is_missing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    base = {"rpc_url": "http://127.0.0.1:1", "registry_address": "0x" + "11" * 20}
    with pytest.raises(ConfigError, match="no database for the custodial engine"):
        engine_config(load_settings(base, config_file=None, environ={}))
    with pytest.raises(ConfigError, match="no passphrase"):
        engine_config(load_settings({**base, "custodial_db_url": "postgresql://x/y"},
                                    config_file=None, environ={}))
    with pytest.raises(ConfigError, match="no signing key for the custodial engine"):
        engine_config(load_settings({**base, "custodial_db_url": "postgresql://x/y",
                                     "custodial_passphrase": "p"}, config_file=None, environ={}))
    config = engine_config(load_settings(
        {**base, "custodial_db_url": "postgresql://x/y", "custodial_passphrase": "p",
         "custodial_keyfile": str(tmp_path / "k.json"), "keyfile_password": "main"},
        config_file=None, environ={}))
    assert config.chain.keyfile == str(tmp_path / "k.json")
    assert config.chain.keyfile_password is None  # never the main signer's password
    assert "passphrase=" not in repr(config)


def test_a_channel_whose_broker_connection_was_dropped_fails_as_a_lost_connection() -> None:
    """What a worker does with a task it held when Redis went away -- ack it, restore it --
    is a connection error (logged: "Couldn't ack"), not kombu's AttributeError that ended the
    worker process."""
    import redis

    from cic_devnet.custodial.app import RedisTransport, create_app

    settings = load_settings({"custodial_broker_url": "redis://127.0.0.1:6379/0",
                              "custodial_queue": "unit_dropped"}, config_file=None, environ={})
    app = create_app(settings, queue_loop=False)
    try:
        with app.connection_for_read() as conn:
            assert isinstance(conn.transport, RedisTransport)
            channel = conn.default_channel
            conn.collect()  # celery's cleanup of a lost connection: the transport is dropped
            with pytest.raises(redis.ConnectionError, match="was closed after it was lost"):
                channel.basic_ack("a-delivery-tag")
    finally:
        app.close()
    embedded = create_app(settings.replace(custodial_broker_url="memory://localhost/"),
                          queue_loop=False)
    assert embedded.conf.broker_transport is None  # kombu's own, for any other broker
    embedded.close()


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(min_size=20, max_size=20), upper=st.booleans())
def test_fast_encodings_agree_with_the_libraries(raw: bytes, upper: bool) -> None:
    """The engine's call data for add/giveTo, the importer's EIP-55 form and the engine's key
    addresses equal what eth-abi, eth-utils and the key derivation give."""
    address = "0x" + (raw.hex().upper() if upper else raw.hex())
    lower = address.lower()
    assert address_call(ACCOUNTS_INDEX.fn("add").selector, lower) == \
        ACCOUNTS_INDEX.encode("add", lower)
    assert address_call(FAUCET.fn("giveTo").selector, lower) == FAUCET.encode("giveTo", lower)
    assert checksummed(address) == to_checksum_address(address)


def test_new_keys_have_their_addresses() -> None:
    for _ in range(50):
        key, address = new_key()
        assert address == address_of(key).lower() and len(key) == 32


class _Counts:
    """The queue's counts of queued and sent transactions, as the tracker reads them."""

    def __init__(self, queued: int, sent: int) -> None:
        self.by_status = {QUEUED: queued, SENT: sent}

    def count(self, *statuses: str) -> int:
        return sum(self.by_status[s] for s in statuses)


def test_the_tracker_mines_full_blocks_but_waits_no_longer_than_max_gather() -> None:
    """On a node that mines when asked the tracker lets the dispatcher send more before it
    mines while more is queued, until FULL_BLOCK are out or it has waited MAX_GATHER; with
    nothing queued it mines at once."""
    now = [100.0]
    loop = QueueLoop(lambda: None)  # type: ignore[arg-type,return-value]
    loop._clock = lambda: now[0]
    assert not loop._gathering(_Counts(queued=0, sent=5))  # type: ignore[arg-type]
    assert not loop._gathering(_Counts(queued=300, sent=FULL_BLOCK))  # type: ignore[arg-type]
    busy = _Counts(queued=300, sent=100)
    assert loop._gathering(busy)  # type: ignore[arg-type]
    now[0] += MAX_GATHER / 2
    assert loop._gathering(busy)  # type: ignore[arg-type]
    now[0] += MAX_GATHER / 2
    assert not loop._gathering(busy)  # type: ignore[arg-type]  # waited long enough: mine
    assert loop._gathering(busy)  # type: ignore[arg-type]  # and the next wait starts afresh
