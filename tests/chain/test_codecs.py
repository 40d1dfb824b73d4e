"""Our fast paths against the field's libraries: keyfiles (eth-keyfile) and signing
(eth-account) must agree byte for byte / both ways."""

from __future__ import annotations

import eth_keyfile
import pytest
import rlp
from coincurve import PrivateKey
from eth_account import Account
from eth_utils import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from cic_seeding.chain._txcodec import decode, rlp_list, sign_1559, sign_legacy
from cic_seeding.chain.keyfile import decrypt_v3, encrypt_v3, kdf_key

keys = st.binary(min_size=32, max_size=32).filter(
    lambda k: 0 < int.from_bytes(k, "big") < 2**256 - 2**32 - 977 - 2**160)


@settings(max_examples=200, deadline=None)
@given(key=keys, nonce=st.integers(0, 2**40), gas_price=st.integers(0, 2**80),
       gas=st.integers(21_000, 30_000_000), to=st.one_of(st.none(), st.binary(min_size=20,
                                                                              max_size=20)),
       value=st.integers(0, 2**128), data=st.binary(max_size=200),
       chain_id=st.integers(1, 2**32))
def test_signing_is_byte_identical_to_eth_account(key: bytes, nonce: int, gas_price: int,
                                                  gas: int, to: bytes | None, value: int,
                                                  data: bytes, chain_id: int) -> None:
    tx = {"nonce": nonce, "gasPrice": gas_price, "gas": gas, "value": value, "data": data,
          "chainId": chain_id}
    if to is not None:
        tx["to"] = to_checksum_address(to)
    expected = Account.sign_transaction(tx, key)
    tx_hash, raw = sign_legacy(PrivateKey(key), nonce=nonce, gas_price=gas_price, gas=gas,
                               to=to or b"", value=value, data=data, chain_id=chain_id)
    assert raw == bytes(expected.raw_transaction)
    assert tx_hash == bytes(expected.hash)


@settings(max_examples=10, deadline=None)
@given(key=keys, password=st.text(max_size=20))
def test_our_keyfiles_open_with_eth_keyfile_and_back(key: bytes, password: str) -> None:
    ours = encrypt_v3(key, password, n=2**4, address=Account.from_key(key).address)
    assert bytes(eth_keyfile.decode_keyfile_json(ours, password.encode())) == key
    theirs = eth_keyfile.create_keyfile_json(key, password.encode(), kdf="scrypt",
                                             iterations=2**4)
    assert decrypt_v3(theirs, password) == key
    assert ours["address"] == Account.from_key(key).address.lower()[2:]


def test_wrong_password_is_a_mac_mismatch_and_pbkdf2_still_reads() -> None:
    key = b"\x11" * 32
    with pytest.raises(ValueError, match="MAC mismatch"):
        decrypt_v3(encrypt_v3(key, "right", n=2**4), "wrong")
    pbkdf2 = eth_keyfile.create_keyfile_json(key, b"pw", kdf="pbkdf2", iterations=10)
    assert decrypt_v3(pbkdf2, "pw") == key


@settings(max_examples=100, deadline=None)
@given(key=keys, nonce=st.integers(0, 2**40), max_fee=st.integers(0, 2**80),
       tip=st.integers(0, 2**80), gas=st.integers(21_000, 30_000_000),
       to=st.one_of(st.none(), st.binary(min_size=20, max_size=20)),
       value=st.integers(0, 2**128), data=st.binary(max_size=200),
       chain_id=st.integers(1, 2**32))
def test_type2_signing_is_byte_identical_to_eth_account_and_decodes(
        key: bytes, nonce: int, max_fee: int, tip: int, gas: int, to: bytes | None, value: int,
        data: bytes, chain_id: int) -> None:
    tx = {"type": 2, "nonce": nonce, "maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip,
          "gas": gas, "value": value, "data": data, "chainId": chain_id, "accessList": []}
    if to is not None:
        tx["to"] = to_checksum_address(to)
    expected = Account.sign_transaction(tx, key)
    tx_hash, raw = sign_1559(PrivateKey(key), nonce=nonce, max_fee=max_fee,
                             max_priority_fee=tip, gas=gas, to=to or b"", value=value,
                             data=data, chain_id=chain_id)
    assert raw == bytes(expected.raw_transaction)
    assert tx_hash == bytes(expected.hash)
    fields = decode(raw)
    assert (fields.tx_type, fields.chain_id, fields.nonce, fields.max_fee, fields.tip,
            fields.gas, fields.to, fields.value, fields.data) == \
        (2, chain_id, nonce, max_fee, tip, gas, to or b"", value, data)
    assert fields.sender == Account.from_key(key).address.lower()


@settings(max_examples=50, deadline=None)
@given(key=keys, nonce=st.integers(0, 2**40), gas_price=st.integers(0, 2**80),
       data=st.binary(max_size=100), chain_id=st.integers(1, 2**32))
def test_legacy_transactions_decode_with_their_sender(key: bytes, nonce: int, gas_price: int,
                                                      data: bytes, chain_id: int) -> None:
    _, raw = sign_legacy(PrivateKey(key), nonce=nonce, gas_price=gas_price, gas=50_000,
                         to=b"\x01" * 20, value=3, data=data, chain_id=chain_id)
    fields = decode(raw)
    assert (fields.tx_type, fields.chain_id, fields.nonce, fields.max_fee, fields.tip,
            fields.data) == (0, chain_id, nonce, gas_price, gas_price, data)
    assert fields.sender == Account.from_key(key).address.lower()


_RLP_ITEMS = st.one_of(st.integers(min_value=0, max_value=2**256), st.binary(max_size=300),
                       st.just([]))


@settings(max_examples=300, deadline=None)
@given(items=st.lists(_RLP_ITEMS, max_size=14))
def test_our_flat_rlp_encoding_is_byte_identical_to_the_rlp_package(items: list) -> None:
    assert rlp_list(items) == rlp.encode(items)


def test_our_rlp_refuses_what_it_does_not_encode() -> None:
    with pytest.raises(ValueError, match="negative"):
        rlp_list([-1])
    with pytest.raises(ValueError, match="flat lists"):
        rlp_list([[1]])


def test_files_sharing_a_stretched_password_open_one_by_one_and_together() -> None:
    shared = kdf_key("pw", 2**4)
    keys = [bytes([i]) * 32 for i in range(1, 4)]
    docs = [encrypt_v3(k, "pw", n=2**4, key=shared) for k in keys]
    assert len({d["crypto"]["cipherparams"]["iv"] for d in docs}) == 3
    assert [bytes(eth_keyfile.decode_keyfile_json(d, b"pw")) for d in docs] == keys
    stretched: dict[tuple[object, ...], bytes] = {}
    assert [decrypt_v3(d, "pw", stretched=stretched) for d in docs] == keys
    assert list(stretched.values()) == [shared.derived]  # one scrypt for the three
    with pytest.raises(ValueError, match="MAC mismatch"):  # the password is part of the key
        decrypt_v3(docs[0], "wrong", stretched=stretched)
    with pytest.raises(ValueError, match="n=16, not 32"):
        encrypt_v3(keys[0], "pw", n=2**5, key=shared)


def test_a_created_contracts_address_follows_from_its_senders_nonce() -> None:
    from cic_seeding.chain.tx import created_address

    dev0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # anvil's and Hardhat's first account
    assert created_address(dev0, 0) == "0x5fbdb2315678afecb367f032d93f642f64180aa3"
    assert created_address(dev0, 1) == "0xe7f1725e7734ce288f8367e1bb143e90bb3f0512"
    # nonce 0 is RLP's empty string, 0x80; a longer nonce is length-prefixed
    assert created_address(dev0, 0x100) != created_address(dev0, 0x10)
