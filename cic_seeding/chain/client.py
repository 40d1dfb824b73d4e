"""The chain client every importer, the syncer and the verifier share.

Reads go out as JSON-array batches; writes are signed locally with one :class:`Signer`, given
nonces by the signer's :class:`NonceAllocator` (safe across processes), broadcast in batches and
confirmed from receipts fetched in batches. On a devnet started with ``--no-mining`` (ours:
anvil's automine loses transactions under load) the client mines explicitly after each batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

from cic_seeding.chain.abi import Function
from cic_seeding.chain.nonce import NonceAllocator, is_already_known
from cic_seeding.chain.rpc import JsonRpc, NodeError
from cic_seeding.chain.signer import SignedTx, Signer
from cic_seeding.chain.tx import Call, Receipt
from cic_seeding.errors import ContractError, RpcError, SignerError, TransactionError
from cic_seeding.remote import poll

log = logging.getLogger(__name__)

ReadCall = tuple[str, Function, Sequence[Any]]  # (contract address, function, args)

#: Seconds a gas price is reused. Short: under load (full blocks) the base fee rises 12.5 %
#: a block, and a price older than a few blocks gets refused ("max fee per gas less than
#: block base fee"), leaving a nonce gap behind it.
GAS_PRICE_TTL = 0.5


def _int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


#: Receipts asked per JSON-RPC batch. A receipt carries its logs: a BatchFunder transaction's
#: (100 accounts) are ~90 KB of JSON, so a block's 100 receipts at once were ~9 MB parsed into
#: ~40 MB of Python objects at the import's peak, and kept in the receipts; 25 at a time
#: (their logs dropped) took the 40,000-user batch import's peak RSS from 174 MB to ~150 at
#: the same speed.
RECEIPTS_PER_ASK = 25


class ChainClient:
    def __init__(self, rpc: JsonRpc, *, signer: Signer | None = None,
                 explicit_mining: bool = False, lock_dir: str | None = None) -> None:
        self.rpc = rpc
        self.signer = signer
        self.explicit_mining = explicit_mining
        self._lock_dir = lock_dir
        self._gas_price: tuple[float, int] | None = None
        self._mine_lock = threading.Lock()
        self._allocators: dict[str, NonceAllocator] = {}
        self._allocators_lock = threading.Lock()

    # -- reads -------------------------------------------------------------------------------
    @cached_property
    def chain_id(self) -> int:
        return _int(self.rpc.call("eth_chainId"))

    def head(self) -> int:
        return _int(self.rpc.call("eth_blockNumber"))

    def code(self, address: str) -> bytes:
        return bytes.fromhex(str(self.rpc.call("eth_getCode", [address, "latest"]))[2:])

    def call(self, to: str, fn: Function, *args: Any) -> Any:
        """One contract read; ContractError if it reverts or no contract answers."""
        (result,) = self.call_many([(to, fn, args)])
        if isinstance(result, Exception):
            raise result
        return result

    def call_many(self, items: Sequence[ReadCall]) -> list[Any]:
        """Reads in one batch; a failed read's slot holds a ContractError."""
        requests_ = [("eth_call", [{"to": to, "data": "0x" + fn.encode(*args).hex()}, "latest"])
                     for to, fn, args in items]
        out: list[Any] = []
        for (to, fn, _), answer in zip(items, self.rpc.batch(requests_), strict=True):
            if isinstance(answer, Exception):
                out.append(ContractError(f"{fn.name} on {to} failed: {answer}"))
                continue
            data = bytes.fromhex(str(answer)[2:])
            if not data and fn.outputs:
                out.append(ContractError(f"{fn.name} on {to} returned nothing: is there a "
                                         "contract at that address?"))
                continue
            try:
                out.append(fn.decode(data))
            except Exception as exc:  # eth-abi raises several unrelated types
                out.append(ContractError(f"{fn.name} on {to} returned undecodable data: {exc}"))
        return out

    def native_balances(self, addresses: Sequence[str]) -> list[int]:
        answers = self.rpc.batch([("eth_getBalance", [a, "latest"]) for a in addresses])
        return [_int(self._ok(a)) for a in answers]

    def block_hashes(self, numbers: Sequence[int]) -> dict[int, str]:
        answers = self.rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
        return {n: str(b["hash"]) for n, b in zip(numbers, answers, strict=True)
                if isinstance(b, dict) and b.get("hash")}

    def logs(self, address: str, topic0: str, first: int, last: int) -> list[dict[str, Any]]:
        """Logs of ``address`` with ``topic0`` in the inclusive block range."""
        return list(self.rpc.call("eth_getLogs", [{"address": address, "topics": [topic0],
                                                   "fromBlock": hex(first),
                                                   "toBlock": hex(last)}]))

    @staticmethod
    def _ok(answer: Any) -> Any:
        if isinstance(answer, Exception):
            raise answer
        return answer

    # -- writes ------------------------------------------------------------------------------
    def _signer(self) -> Signer:
        if self.signer is None:
            raise SignerError("this command needs a signing key",
                              hint="give --devnet DIR or -y KEYFILE with its password")
        return self.signer

    @cached_property
    def chain_key(self) -> str:
        """The chain id and the start of the genesis hash: two devnets share a chain id."""
        genesis = self.block_hashes([0]).get(0, "")[2:14]
        return f"{self.chain_id}-{genesis}"

    @cached_property
    def allocator(self) -> NonceAllocator:
        return self.allocator_for(self._signer().address)

    def allocator_for(self, address: str) -> NonceAllocator:
        """The nonce lock of ``address`` on this chain (one per address and process)."""
        key = address.lower()
        with self._allocators_lock:
            if key not in self._allocators:
                self._allocators[key] = NonceAllocator(
                    key, self.chain_key, lambda: self.nonces([key])[key][1], self._lock_dir)
            return self._allocators[key]

    def pending_nonce(self) -> int:
        return _int(self.rpc.call("eth_getTransactionCount",
                                  [self._signer().address, "pending"]))

    def nonces(self, addresses: Sequence[str]) -> dict[str, tuple[int, int]]:
        """``address -> (latest, pending)`` transaction counts, in one batch."""
        answers = self.rpc.batch([("eth_getTransactionCount", [a, tag])
                                  for a in addresses for tag in ("latest", "pending")])
        return {a: (_int(self._ok(answers[2 * i])), _int(self._ok(answers[2 * i + 1])))
                for i, a in enumerate(addresses)}

    def fee_market(self) -> tuple[int | None, int]:
        """``(base fee of the latest block or None, suggested priority fee)``."""
        block = self.rpc.call("eth_getBlockByNumber", ["latest", False]) or {}
        if block.get("baseFeePerGas") is None:
            return None, 0
        try:
            tip = _int(self.rpc.call("eth_maxPriorityFeePerGas"))
        except RpcError:
            tip = 10**9
        return _int(block["baseFeePerGas"]), tip

    def gas_price(self) -> int:
        """A legacy gas price, cached for a few seconds.

        On an EIP-1559 chain: twice the latest base fee (room for it to rise) plus the node's
        suggested tip. Not ``eth_gasPrice`` with a margin: anvil derives that from recent fees,
        so paying a margin over it feeds back until users' gas gifts cover only a few
        transactions. Elsewhere: ``eth_gasPrice`` as it is."""
        now = time.monotonic()
        if self._gas_price is None or now - self._gas_price[0] > GAS_PRICE_TTL:
            block = self.rpc.call("eth_getBlockByNumber", ["latest", False]) or {}
            if block.get("baseFeePerGas") is not None:
                try:
                    tip = _int(self.rpc.call("eth_maxPriorityFeePerGas"))
                except RpcError:
                    tip = 10**9
                price = 2 * _int(block["baseFeePerGas"]) + tip
            else:
                price = _int(self.rpc.call("eth_gasPrice"))
            self._gas_price = (now, max(1, price))
        return self._gas_price[1]

    def sign(self, call: Call, nonce: int) -> SignedTx:
        return self._signer().sign(call, nonce=nonce, gas_price=self.gas_price(),
                                   chain_id=self.chain_id)

    def send(self, calls: Sequence[Call], *,
             before_broadcast: Callable[[Sequence[SignedTx]], None] | None = None
             ) -> list[tuple[SignedTx, str | None]]:
        """Sign and broadcast ``calls`` as one batch: ``(signed, node error or None)`` each.

        ``before_broadcast`` gets the signed transactions first (to record them durably)."""
        if not calls:
            return []
        with self.allocator.reserve() as r:
            signed = [self.sign(c, r.next()) for c in calls]
            if before_broadcast is not None:
                before_broadcast(signed)
            errors = self.broadcast([s.raw for s in signed])
        return list(zip(signed, errors, strict=True))

    def broadcast(self, raws: Sequence[str], *, mine: bool = True) -> list[str | None]:
        """Send signed transactions in one batch; None where the node took (or had) it. A node
        that mines only when asked is asked then (unless ``mine`` is False)."""
        answers = self.rpc.batch([("eth_sendRawTransaction", [raw]) for raw in raws])
        errors: list[str | None] = []
        for answer in answers:
            if isinstance(answer, NodeError):
                errors.append(None if is_already_known(answer.node_message)
                              else answer.node_message)
            elif isinstance(answer, Exception):
                errors.append(str(answer))
            else:
                errors.append(None)
        if mine and self.explicit_mining and any(e is None for e in errors):
            self.mine()
        return errors

    def mine(self, blocks: int = 1) -> None:
        with self._mine_lock:
            for _ in range(blocks):
                self.rpc.call("evm_mine")

    # -- confirmation ------------------------------------------------------------------------
    def receipts(self, tx_hashes: Sequence[str], *, logs: bool = False) -> dict[str, Receipt]:
        """The receipts of those of ``tx_hashes`` that are mined; their logs only with
        ``logs`` (nothing here reads them, and a batch transaction's are many)."""
        out = {}
        for i in range(0, len(tx_hashes), RECEIPTS_PER_ASK):
            hashes = tx_hashes[i:i + RECEIPTS_PER_ASK]
            answers = self.rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
            for h, rc in zip(hashes, answers, strict=True):
                if isinstance(rc, dict) and rc.get("blockNumber"):
                    out[h] = Receipt(h, _int(rc.get("status", "0x1")) == 1,
                                     _int(rc["blockNumber"]), rc.get("contractAddress"),
                                     tuple(rc.get("logs") or ()) if logs else ())
        return out

    def known(self, tx_hashes: Sequence[str]) -> set[str]:
        answers = self.rpc.batch([("eth_getTransactionByHash", [h]) for h in tx_hashes])
        return {h for h, tx in zip(tx_hashes, answers, strict=True) if isinstance(tx, dict)}

    def wait(self, tx_hashes: Sequence[str], timeout: float = 120.0,
             stop: threading.Event | None = None) -> dict[str, Receipt]:
        """Receipts of every hash; TransactionError naming the missing ones after ``timeout``."""
        found: dict[str, Receipt] = {}

        def all_found() -> bool:
            found.update(self.receipts([h for h in tx_hashes if h not in found]))
            return all(h in found for h in tx_hashes)

        if poll(all_found, until=time.monotonic() + timeout, first=0.05, cap=1.0, stop=stop,
                between=self.mine if self.explicit_mining else None):
            return found
        if stop is not None and stop.is_set():
            raise KeyboardInterrupt
        missing = [h for h in tx_hashes if h not in found]
        raise TransactionError(
            f"{len(missing)} transactions not mined after {timeout:.0f}s "
            f"(first {missing[0]})", hint="is the node mining? a rerun resumes")

    def transact(self, call: Call, what: str, timeout: float = 120.0) -> Receipt:
        """Send one transaction and wait for it; TransactionError with the revert reason."""
        ((signed, error),) = self.send([call])
        if error is not None:
            raise TransactionError(f"{what}: the node refused the transaction: {error}")
        receipt = self.wait([signed.tx_hash], timeout)[signed.tx_hash]
        if not receipt.ok:
            raise TransactionError(f"{what}: transaction {signed.tx_hash} reverted"
                                   f"{self.revert_reason(call)}")
        return receipt

    def revert_reason(self, call: Call) -> str:
        """``": <reason>"`` from replaying ``call`` as eth_call, or "" if it does not revert."""
        params: dict[str, Any] = {"from": self._signer().address, "data": "0x" + call.data.hex(),
                                  "value": hex(call.value)}
        if call.to:
            params["to"] = call.to
        try:
            self.rpc.call("eth_call", [params, "latest"])
        except NodeError as exc:
            return f": {exc.node_message}"
        except RpcError:
            return ""
        return ""
