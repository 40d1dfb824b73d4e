"""A project's tests against a CIC network, with cic-seeding's pytest plugin.

Install ``cic-seeding[devnet]`` and anvil (``npm install @foundry-rs/anvil``, or ``anvil`` on
PATH); the plugin registers itself, so the fixtures need no import and no conftest.py:

- ``cic_devnet`` (session): anvil with the CIC contracts; ``.rpc_url``, ``.registry``,
  ``.info`` (devnet.json: the token, the faucet, the deployer ...).
- ``cic_seed`` (per test): ``cic_seed(50, seed=1)`` generates, imports, pays and verifies 50
  users and returns them (``.addresses``, ``.private_key(i)``, ``.data_dir``, ``.verify()``).
  What a test does to the chain is undone after it.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

from eth_account import Account  # comes with cic-seeding


def rpc(url: str, method: str, *params: Any) -> Any:
    """One JSON-RPC call (any client does; this one needs nothing installed)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    request = urllib.request.Request(url, body.encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        reply = json.load(answer)
    assert "error" not in reply, reply
    return reply["result"]


def word(value: int | str) -> str:
    """An ABI word: an address or a number, 32 bytes of hex."""
    return (value[2:] if isinstance(value, str) else f"{value:x}").lower().rjust(64, "0")


def receipt(url: str, tx_hash: str, timeout: float = 30.0) -> dict[str, Any]:
    """The receipt of ``tx_hash`` once it is mined. Automine mines a transaction as it
    arrives, but after ``eth_sendRawTransaction`` has answered: ask until the receipt is
    there (or fail after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while (found := rpc(url, "eth_getTransactionReceipt", tx_hash)) is None:
        assert time.monotonic() < deadline, f"{tx_hash} not mined in {timeout} s"
        time.sleep(0.05)
    return found


def token_balance(url: str, token: str, holder: str) -> int:
    return int(rpc(url, "eth_call", {"to": token, "data": "0x70a08231" + word(holder)},
                   "latest"), 16)


def test_fifty_users_are_seeded_and_verified(cic_seed: Any) -> None:
    users = cic_seed(50, seed=1)
    assert len(set(users.addresses)) == 50
    assert users.verified.ok, users.verified.render_text()
    assert users.verified.checks["balance"].ok == 50  # opening balance + faucet payout


def test_each_test_starts_from_the_devnet_as_deployed(cic_devnet: Any, cic_seed: Any) -> None:
    """The users the test above seeded are gone: the same seed makes them again."""
    token = cic_devnet.info["token"]["address"]
    users = cic_seed(3, seed=1)
    assert all(token_balance(cic_devnet.rpc_url, token, a) > 0 for a in users.addresses)
    assert users.seed == 1 and (users.data_dir / "users.csv").is_file()


def test_a_transfer_shows_in_the_verification(cic_devnet: Any, cic_seed: Any) -> None:
    """The users' keys sign transactions like any account's; verify() sees what changed."""
    url, token = cic_devnet.rpc_url, cic_devnet.info["token"]["address"]
    users = cic_seed(5, seed=7)
    sender, recipient = users.addresses[0], users.addresses[1]
    before = token_balance(url, token, recipient)
    transfer = {"to": token, "data": "0xa9059cbb" + word(recipient) + word(1_000_000),
                "gas": 100_000, "gasPrice": int(rpc(url, "eth_gasPrice"), 16),
                "nonce": int(rpc(url, "eth_getTransactionCount", sender, "pending"), 16),
                "chainId": int(rpc(url, "eth_chainId"), 16)}
    signed = Account.sign_transaction(transfer, users.private_key(0))
    sent = rpc(url, "eth_sendRawTransaction", "0x" + signed.raw_transaction.hex())
    assert int(receipt(url, sent)["status"], 16) == 1
    assert token_balance(url, token, recipient) == before + 1_000_000

    again = users.verify(include=("balance",))
    assert not again.ok
    failed = {f.address.lower() for f in again.checks["balance"].failures}
    assert failed == {sender.lower(), recipient.lower()}
