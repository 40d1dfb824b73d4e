"""Functional smoke test of the devnet contracts on a real anvil (pre-Shanghai "paris" rules).

Uses anvil's unlocked dev accounts and automine: a handful of transactions only.
"""

import json
import pathlib
import socket
import subprocess
import time

import pytest
from web3 import Web3
from web3.exceptions import ContractLogicError

ROOT = pathlib.Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "cic_seeding" / "chain" / "artifacts"
ANVIL = ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"

ADDRESS_ADDED = "0xa226db3f664042183ee0281230bba26cbf7b5057e50aee7f25a175ff45ce4d7f"


def key32(text):
    return text.encode().ljust(32, b"\0")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def w3():
    port = free_port()
    proc = subprocess.Popen(
        [str(ANVIL), "--port", str(port), "--hardfork", "paris", "--accounts", "6", "--silent"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    web3 = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{port}", request_kwargs={"timeout": 30}))
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if web3.eth.chain_id:
                    break
            except Exception as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode(errors="replace")
                    raise RuntimeError("anvil did not start: " + err) from exc
                time.sleep(0.1)
        yield web3
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def artifact(name):
    return json.loads((ARTIFACTS / f"{name}.json").read_text())


def deploy(w3, name, *args, sender):
    a = artifact(name)
    tx = (
        w3.eth.contract(abi=a["abi"], bytecode=a["bytecode"])
        .constructor(*args)
        .transact({"from": sender})
    )
    receipt = w3.eth.wait_for_transaction_receipt(tx)
    assert receipt.status == 1
    return w3.eth.contract(address=receipt.contractAddress, abi=a["abi"])


def send(w3, fn, sender):
    receipt = w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender}))
    assert receipt.status == 1
    return receipt


def test_devnet_contracts_end_to_end(w3):
    owner, writer, alice, bob, carol, dave = w3.eth.accounts[:6]

    ids = [
        key32(n)
        for n in ("ContractRegistry", "AccountRegistry", "TokenRegistry", "Faucet", "DefaultToken")
    ]
    registry = deploy(w3, "Registry", ids, sender=owner)
    index = deploy(w3, "AccountsIndex", sender=owner)
    tokens = deploy(w3, "TokenUniqueSymbolIndex", sender=owner)
    token = deploy(w3, "GiftableToken", "Giftable Token", "GFT", 6, 0, sender=owner)
    store = deploy(w3, "FaucetStore", sender=owner)
    faucet = deploy(w3, "ERC20Faucet", token.address, store.address, index.address, sender=owner)
    reader = deploy(w3, "BatchReader", sender=owner)
    funder = deploy(w3, "BatchFunder", sender=owner)

    # Registry: declared identifiers only, owner only.
    assert registry.functions.identifierCount().call() == 5
    assert registry.functions.identifier(1).call() == key32("AccountRegistry")
    assert registry.functions.addressOf(key32("AccountRegistry")).call() == "0x" + "00" * 20
    for name, contract in (
        ("ContractRegistry", registry),
        ("AccountRegistry", index),
        ("TokenRegistry", tokens),
        ("Faucet", faucet),
        ("DefaultToken", token),
    ):
        send(w3, registry.functions.set(key32(name), contract.address), owner)
    assert registry.functions.addressOf(key32("AccountRegistry")).call() == index.address
    with pytest.raises(ContractLogicError, match="not declared"):
        registry.functions.set(key32("Nonsense"), index.address).transact({"from": owner})
    with pytest.raises(ContractLogicError, match="not the owner"):
        registry.functions.set(key32("Faucet"), index.address).transact({"from": writer})

    # AccountsIndex: writers only, duplicates revert, event carries the address as data.
    with pytest.raises(ContractLogicError, match="not a writer"):
        index.functions.add(alice).transact({"from": writer})
    send(w3, index.functions.addWriter(writer), owner)
    assert index.functions.isWriter(writer).call() and index.functions.isWriter(owner).call()
    receipt = send(w3, index.functions.add(alice), writer)
    (log,) = receipt.logs
    assert log.topics[0].to_0x_hex() == ADDRESS_ADDED and len(log.topics) == 1
    assert Web3.to_checksum_address(log.data[12:]) == alice
    assert index.functions.have(alice).call() and not index.functions.have(bob).call()
    with pytest.raises(ContractLogicError, match="already added"):
        index.functions.add(alice).transact({"from": writer})
    receipt = send(w3, index.functions.addMany([alice, bob, carol, bob]), writer)
    assert len(receipt.logs) == 2  # bob and carol; duplicates skipped
    assert index.functions.entryCount().call() == 3
    assert [index.functions.entry(i).call() for i in range(3)] == [alice, bob, carol]
    send(w3, index.functions.remove(alice), writer)
    assert [index.functions.entry(i).call() for i in range(2)] == [carol, bob]
    send(w3, index.functions.add(alice), writer)

    # Token index keyed by the token's own symbol.
    send(w3, tokens.functions.register(token.address), owner)
    assert tokens.functions.addressOf(key32("GFT")).call() == token.address
    assert tokens.functions.entryCount().call() == 1
    with pytest.raises(ContractLogicError, match="already registered"):
        tokens.functions.register(token.address).transact({"from": owner})

    # Token: mint by writers, ERC20 basics.
    assert (token.functions.symbol().call(), token.functions.decimals().call()) == ("GFT", 6)
    with pytest.raises(ContractLogicError, match="not a writer"):
        token.functions.mintTo(alice, 1).transact({"from": alice})
    send(w3, token.functions.mintTo(owner, 10_000_000), owner)
    send(w3, token.functions.transfer(alice, 1_000), owner)
    assert token.functions.balanceOf(alice).call() == 1_000
    with pytest.raises(ContractLogicError, match="insufficient balance"):
        token.functions.transfer(bob, 1_001).transact({"from": alice})

    # Faucet: must be made a writer of its store, pays once per account by default.
    send(w3, faucet.functions.setAmount(500), owner)
    send(w3, token.functions.transfer(faucet.address, 5_000), owner)
    with pytest.raises(ContractLogicError, match="not a writer"):
        faucet.functions.giveTo(alice).transact({"from": owner})
    send(w3, store.functions.addWriter(faucet.address), owner)
    assert faucet.functions.nextTime(alice).call() == 0
    send(w3, faucet.functions.giveTo(alice), owner)
    assert token.functions.balanceOf(alice).call() == 1_500
    assert faucet.functions.nextTime(alice).call() == 2**256 - 1
    with pytest.raises(ContractLogicError, match="cooldown"):
        faucet.functions.giveTo(alice).transact({"from": owner})
    with pytest.raises(ContractLogicError, match="not in accounts index"):
        faucet.functions.giveTo(dave).transact({"from": owner})
    send(w3, faucet.functions.gimme(), bob)
    assert token.functions.balanceOf(bob).call() == 500

    # A period turns the one-off into a cooldown.
    send(w3, faucet.functions.setPeriod(100), owner)
    assert faucet.functions.nextTime(alice).call() > 0
    w3.provider.make_request("evm_increaseTime", [101])
    w3.provider.make_request("evm_mine", [])
    send(w3, faucet.functions.giveTo(alice), owner)
    assert token.functions.balanceOf(alice).call() == 2_000

    # BatchReader.
    assert reader.functions.tokenBalances(token.address, [alice, bob, dave]).call() == [
        2_000,
        500,
        0,
    ]
    assert reader.functions.haveMany(index.address, [alice, dave]).call() == [True, False]
    assert reader.functions.nativeBalances([dave]).call() == [w3.eth.get_balance(dave)]
    ok, results = reader.functions.batchRead(
        [token.address, index.address],
        [token.encode_abi("balanceOf", [alice]), token.encode_abi("mintTo", [alice, 1])],
    ).call()
    assert ok == [True, False] and int.from_bytes(results[0], "big") == 2_000

    # BatchFunder: writer of index and token; already registered accounts are skipped.
    fresh = [Web3.to_checksum_address(bytes([0x42, i]) + b"\x11" * 18) for i in range(3)]
    send(w3, index.functions.addWriter(funder.address), owner)
    send(w3, token.functions.addWriter(funder.address), owner)
    send(
        w3,
        funder.functions.registerAndMint(index.address, token.address, [fresh[0], alice], [7, 7]),
        owner,
    )
    assert (
        token.functions.balanceOf(fresh[0]).call() == 7
        and token.functions.balanceOf(alice).call() == 2_000
    )
    send(w3, token.functions.approve(funder.address, 100), owner)
    send(
        w3,
        funder.functions.registerAndFund(index.address, token.address, fresh[1:], [30, 40]),
        owner,
    )
    assert reader.functions.tokenBalances(token.address, fresh).call() == [7, 30, 40]
    send(w3, store.functions.addWriter(faucet.address), owner)
    send(w3, faucet.functions.addWriter(funder.address), owner)
    send(
        w3, funder.functions.giveMany(faucet.address, [fresh[0], bob]), owner
    )  # bob already used it
    assert reader.functions.tokenBalances(token.address, [fresh[0], bob]).call() == [507, 500]
    # giveValue splits msg.value exactly; anything else reverts
    before = [w3.eth.get_balance(a) for a in fresh[:2]]
    receipt = w3.eth.wait_for_transaction_receipt(
        funder.functions.giveValue(fresh[:2], [3, 4]).transact({"from": owner, "value": 7})
    )
    assert receipt.status == 1
    assert [w3.eth.get_balance(a) for a in fresh[:2]] == [before[0] + 3, before[1] + 4]
    with pytest.raises(ContractLogicError, match="sum of amounts"):
        funder.functions.giveValue(fresh[:2], [3, 4]).transact({"from": owner, "value": 8})
    with pytest.raises(ContractLogicError, match="not a writer"):
        funder.functions.giveValue(fresh[:1], [1]).transact({"from": bob, "value": 1})


def test_token_expiry(w3):
    owner, alice = w3.eth.accounts[:2]
    now = w3.eth.get_block("latest").timestamp
    token = deploy(w3, "GiftableToken", "Expiring", "EXP", 2, now + 1_000, sender=owner)
    send(w3, token.functions.mintTo(owner, 100), owner)
    send(w3, token.functions.transfer(alice, 10), owner)
    w3.provider.make_request("evm_increaseTime", [2_000])
    w3.provider.make_request("evm_mine", [])
    with pytest.raises(ContractLogicError, match="expired"):
        token.functions.transfer(alice, 10).transact({"from": owner})
    with pytest.raises(ContractLogicError, match="expired"):
        token.functions.mintTo(alice, 10).transact({"from": owner})
