"""Fast chain reads: one eth_call answers a question for a whole batch of addresses (the
verifier's reads, and the eth importer's check of which users are registered already).

The BatchReader contract's runtime code is placed at a fixed address by an eth_call *state
override*, so nothing has to be deployed and any node that honours overrides (geth, erigon,
anvil, hardhat, most providers) serves it. A node that ignores or refuses overrides is detected
once, with an empty probe, and the plain reader (a JSON-RPC array of eth_calls) is used instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from importlib import resources

from cic_seeding.chain.abi import artifact
from cic_seeding.chain.reader import NetworkReader
from cic_seeding.chain.registry import FAUCET
from cic_seeding.chain.rpc import JsonRpc, NodeError
from cic_seeding.errors import ContractError, RpcError

log = logging.getLogger(__name__)

#: Where the override puts BatchReader's code: an address no key or deployment can produce.
READER_ADDRESS = "0x00000000000000000000000000000000c1cba7c4"
#: Addresses per eth_call; BatchReader runs under the node's eth_call gas cap.
CHUNK = 500

_READER = artifact("BatchReader")


# Call data and results are packed by hand: with eth-abi (and checksummed addresses) encoding
# 500 addresses costs more than the node takes to answer. tests/verify/test_batch_reader.py
# holds these to eth-abi's encoding.
_HAVE_MANY = _READER.fn("haveMany").selector
_TOKEN_BALANCES = _READER.fn("tokenBalances").selector
_NATIVE_BALANCES = _READER.fn("nativeBalances").selector
_BATCH_READ = _READER.fn("batchRead").selector
_NEXT_TIME = FAUCET.fn("nextTime").selector


def _word(n: int) -> bytes:
    return n.to_bytes(32, "big")


def _address(address: str) -> bytes:
    raw = bytes.fromhex(address.removeprefix("0x"))
    if len(raw) != 20:
        raise ValueError(f"not a 20-byte address: {address!r}")
    return raw.rjust(32, b"\0")


def _address_array(addresses: Sequence[str]) -> bytes:
    return _word(len(addresses)) + b"".join(_address(a) for a in addresses)


def encode_have_many(index: str, addresses: Sequence[str]) -> bytes:
    """Call data of ``haveMany(index, addresses)``."""
    return _HAVE_MANY + _address(index) + _word(64) + _address_array(addresses)


def encode_token_balances(token: str, addresses: Sequence[str]) -> bytes:
    """Call data of ``tokenBalances(token, addresses)``."""
    return _TOKEN_BALANCES + _address(token) + _word(64) + _address_array(addresses)


def encode_native_balances(addresses: Sequence[str]) -> bytes:
    """Call data of ``nativeBalances(addresses)``."""
    return _NATIVE_BALANCES + _word(32) + _address_array(addresses)


def encode_next_times(faucet: str, addresses: Sequence[str]) -> bytes:
    """Call data of ``batchRead([faucet] * n, [nextTime(a) for a in addresses])``."""
    n = len(addresses)
    targets = _word(n) + _address(faucet) * n
    # each element: its length (36) and the call padded to 64 bytes
    element = 32 + 64
    offsets = b"".join(_word(32 * n + i * element) for i in range(n))
    calls = b"".join(_word(36) + (_NEXT_TIME + _address(a)).ljust(64, b"\0")
                     for a in addresses)
    return _BATCH_READ + _word(64) + _word(64 + len(targets)) + targets + _word(n) + offsets \
        + calls


def _int_at(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset:offset + 32], "big")


def decode_uint_array(data: bytes, offset: int = 0) -> list[int]:
    """The ``uint256[]`` (or ``bool[]``) whose head word is at ``offset`` of ``data``."""
    start = _int_at(data, offset)
    n = _int_at(data, start)
    if len(data) < start + 32 + 32 * n:
        raise ValueError(f"truncated array of {n}")
    return [_int_at(data, start + 32 + 32 * i) for i in range(n)]


def decode_bytes_array(data: bytes, offset: int) -> list[bytes]:
    """The ``bytes[]`` whose head word is at ``offset`` of ``data``."""
    start = _int_at(data, offset)
    n = _int_at(data, start)
    base = start + 32
    out = []
    for i in range(n):
        at = base + _int_at(data, base + 32 * i)
        out.append(data[at + 32:at + 32 + _int_at(data, at)])
    return out


def _runtime_code() -> str:
    text = resources.files("cic_seeding.chain.artifacts").joinpath("BatchReader.json")
    code = str(json.loads(text.read_text())["deployedBytecode"])
    return code if code.startswith("0x") else "0x" + code


class BatchReader:
    """BatchReader's code run on ``rpc``'s node by an ``eth_call`` state override: one call
    answers a question for up to ``chunk`` addresses. :attr:`works` is False on a node that
    ignores or refuses overrides (probed once, with an empty question)."""

    def __init__(self, rpc: JsonRpc, chunk: int = CHUNK) -> None:
        self.rpc = rpc
        self.chunk = chunk
        self._override = {READER_ADDRESS: {"code": _runtime_code()}}
        self.works = self._probe()

    def _probe(self) -> bool:
        try:
            (answer,) = self.call("nativeBalances", [encode_native_balances([])])
            return decode_uint_array(answer) == []
        except (RpcError, ContractError, ValueError):
            return False

    def call(self, what: str, calls: Sequence[bytes]) -> list[bytes]:
        """The raw answers of BatchReader to ``calls``, sent in one JSON-RPC batch."""
        requests_ = [("eth_call", [{"to": READER_ADDRESS, "data": "0x" + c.hex()}, "latest",
                                   self._override]) for c in calls]
        out = []
        for answer in self.rpc.batch(requests_):
            if isinstance(answer, NodeError):
                raise ContractError(f"BatchReader.{what} failed: {answer.node_message}")
            if isinstance(answer, Exception):
                raise answer
            data = bytes.fromhex(str(answer).removeprefix("0x"))
            if not data:
                raise ContractError(f"BatchReader.{what} returned nothing: the node ignored "
                                    "the state override")
            out.append(data)
        return out

    def chunks(self, addresses: Sequence[str]) -> list[Sequence[str]]:
        return [addresses[i:i + self.chunk] for i in range(0, len(addresses), self.chunk)]

    def words(self, what: str, encode: Callable[[Sequence[str]], bytes],
              addresses: Sequence[str]) -> dict[str, int]:
        """``{address (lower case): the uint BatchReader.what answered for it}``."""
        answers = self.call(what, [encode(c) for c in self.chunks(addresses)])
        values = [v for answer in answers for v in decode_uint_array(answer)]
        if len(values) != len(addresses):
            raise ContractError(f"BatchReader.{what} answered {len(values)} values for "
                                f"{len(addresses)} addresses")
        return {a.lower(): v for a, v in zip(addresses, values, strict=True)}

    def have(self, index: str, addresses: Sequence[str]) -> dict[str, bool]:
        """``AccountsIndex(index).have`` of each address (keys lower case)."""
        found = self.words("haveMany", lambda c: encode_have_many(index, c), addresses)
        return {a: bool(v) for a, v in found.items()}


class BatchReaderChain:
    """Implements ``VerifyChain`` over ``reader``'s node with :class:`BatchReader`.

    Falls back to ``reader`` itself when the node does not run overridden code.
    """

    def __init__(self, reader: NetworkReader, chunk: int = CHUNK) -> None:
        self._reader = reader
        self._batch = BatchReader(reader.client.rpc, chunk)
        self.token_address = reader.token_address
        self.token_symbol = reader.token_symbol
        self.token_decimals = reader.token_decimals
        self.overrides = self._batch.works
        if not self.overrides:
            log.info("the node does not run state-overridden code: reading per address")

    def have(self, addresses: Sequence[str]) -> dict[str, bool]:
        if not self.overrides:
            return self._reader.have(addresses)
        return self._batch.have(self._reader.network.accounts_index, addresses)

    def token_balances(self, addresses: Sequence[str]) -> dict[str, int]:
        if not self.overrides:
            return self._reader.token_balances(addresses)
        token = self.token_address
        return self._batch.words("tokenBalances", lambda c: encode_token_balances(token, c),
                                 addresses)

    def native_balances(self, addresses: Sequence[str]) -> dict[str, int]:
        if not self.overrides:
            return self._reader.native_balances(addresses)
        return self._batch.words("nativeBalances", encode_native_balances, addresses)

    def faucet_next_time(self, addresses: Sequence[str]) -> dict[str, int]:
        if not self.overrides:
            return self._reader.faucet_next_time(addresses)
        faucet = self._reader.network.faucet
        answers = self._batch.call("batchRead", [encode_next_times(faucet, c)
                                                 for c in self._batch.chunks(addresses)])
        flat = [(ok, raw) for answer in answers for ok, raw in
                zip(decode_uint_array(answer, 0), decode_bytes_array(answer, 32), strict=True)]
        if len(flat) != len(addresses):
            raise ContractError(f"BatchReader.batchRead answered {len(flat)} values for "
                                f"{len(addresses)} addresses")
        out: dict[str, int] = {}
        for a, (ok, raw) in zip(addresses, flat, strict=True):
            if not ok or len(raw) < 32:
                raise ContractError(f"nextTime({a}) on the faucet {faucet} failed")
            out[a.lower()] = int.from_bytes(raw[:32], "big")
        return out

    def faucet_amount(self) -> int:
        return self._reader.faucet_amount()
