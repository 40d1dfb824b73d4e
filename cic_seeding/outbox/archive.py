"""The data directory's ``tx/``: every transaction signed for a user, raw, named by its hash.

As the older data-seeding tool promised, each file ``tx/<AB>/<CD>/<HASH>`` (the hash upper-case
without ``0x``, sharded like every store of the data directory) holds the signed transaction in
wire format, written as 0x-hex text (the form JSON-RPC carries it in:
``eth_sendRawTransaction``'s argument).

The outbox saves what this toolkit signs as it records it, before the broadcast
(:func:`save`). What another signer made for our users -- the custodial engine's
registrations, gas gifts, faucet payouts and opening-balance transfers -- is known here by its
hash only: :meth:`TxArchive.fetch` asks the node for its bytes (``eth_getRawTransactionByHash``;
a node without that method gets ``eth_getTransactionByHash`` and the fields are RLP-encoded
again), keeps them only if they hash to the name, and saves them the same way. A transaction
already saved is not asked for again, so a rerun rewrites nothing; one the node does not have
(pruned, never mined) costs one log line, never the run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import rlp
from eth_utils import keccak

from cic_seeding.chain.rpc import JsonRpc
from cic_seeding.datadir.store import KeyedStore
from cic_seeding.errors import RpcError

log = logging.getLogger(__name__)

#: How many named transactions a "not archived" line lists (then "and N more").
NAMED = 3


def save(tx: KeyedStore, items: Iterable[tuple[str, str]]) -> None:
    """Save ``(tx hash, 0x-hex raw transaction)`` pairs under ``tx`` (atomically per file)."""
    for tx_hash, raw in items:
        tx.put(tx_hash, _hex(raw).encode())


def _hex(raw: str) -> str:
    return "0x" + raw.removeprefix("0x").removeprefix("0X").lower()


def _int(value: Any) -> int:
    if value is None:
        return 0
    return int(value, 16) if isinstance(value, str) else int(value)


def _bytes(value: Any) -> bytes:
    return bytes.fromhex(str(value or "0x")[2:])


def encode_signed(tx: Mapping[str, Any]) -> bytes:
    """The wire bytes of a signed transaction as ``eth_getTransactionByHash`` describes it:
    legacy, EIP-2930 (type 1) or EIP-1559 (type 2); ValueError for another type."""
    kind = _int(tx.get("type", 0))
    to = _bytes(tx["to"]) if tx.get("to") else b""
    data = _bytes(tx.get("input") or tx.get("data"))
    r, s = _int(tx.get("r")), _int(tx.get("s"))
    if kind == 0:
        return bytes(rlp.encode([_int(tx["nonce"]), _int(tx["gasPrice"]), _int(tx["gas"]), to,
                                 _int(tx["value"]), data, _int(tx["v"]), r, s]))
    access = [[_bytes(e["address"]), [_bytes(k) for k in e.get("storageKeys") or []]]
              for e in tx.get("accessList") or []]
    parity = _int(tx["yParity"]) if tx.get("yParity") is not None else _int(tx["v"])
    parity = parity - 27 if parity >= 27 else parity
    if kind == 1:
        fields = [_int(tx["chainId"]), _int(tx["nonce"]), _int(tx["gasPrice"])]
    elif kind == 2:
        fields = [_int(tx["chainId"]), _int(tx["nonce"]), _int(tx["maxPriorityFeePerGas"]),
                  _int(tx["maxFeePerGas"])]
    else:
        raise ValueError(f"transaction type {kind} is not one this toolkit encodes "
                         "(legacy, 1, 2)")
    body = [*fields, _int(tx["gas"]), to, _int(tx["value"]), data, access, parity, r, s]
    return bytes([kind]) + bytes(rlp.encode(body))


@dataclass
class Fetched:
    """What one :meth:`TxArchive.fetch` did: saved now, saved before, not archived."""

    saved: int = 0
    had: int = 0
    missing: int = 0


class TxArchive:
    """The ``tx/`` store of a data directory, filled from a node by hash."""

    def __init__(self, tx: KeyedStore, rpc: JsonRpc) -> None:
        self.tx = tx
        self.rpc = rpc
        self._raw_method = True  # False once the node refused eth_getRawTransactionByHash

    def fetch(self, wanted: Mapping[str, str]) -> Fetched:
        """Save each transaction of ``wanted`` (``{tx hash: what it is}``, e.g. "opening
        balance of 0x...") from the node, unless ``tx/`` has it; those the node does not have
        (or whose bytes do not hash to the name) are logged in one line and skipped. A node
        that does not answer raises, as any node call does."""
        out = Fetched()
        todo = []
        for tx_hash in dict.fromkeys(h.lower() for h in wanted):
            if self.tx.has(tx_hash):
                out.had += 1
            else:
                todo.append(tx_hash)
        if not todo:
            return out
        what = {h.lower(): w for h, w in wanted.items()}
        raws, problems = self._raws(todo)
        for tx_hash in todo:
            raw = raws.get(tx_hash)
            if raw is not None and "0x" + keccak(raw).hex() != tx_hash:
                problems[tx_hash] = "the node's bytes hash to something else"
                raw = None
            if raw is None:
                problems.setdefault(tx_hash, "the node does not have it")
                continue
            self.tx.put(tx_hash, ("0x" + raw.hex()).encode())
            out.saved += 1
        if problems:
            out.missing = len(problems)
            named = ", ".join(f"{h} ({what[h]}: {why})"
                              for h, why in list(problems.items())[:NAMED])
            more = f" and {len(problems) - NAMED} more" if len(problems) > NAMED else ""
            log.warning("tx/: %d transactions not archived: %s%s", len(problems), named, more)
        return out

    def _raws(self, hashes: Sequence[str]) -> tuple[dict[str, bytes], dict[str, str]]:
        """``({hash: raw bytes}, {hash: why not})`` from the node: its raw bytes, else the
        transaction's fields encoded again. The node's refusals are reasons, not errors; a node
        that does not answer at all raises (:class:`~cic_seeding.errors.RpcUnavailableError`)."""
        raws: dict[str, bytes] = {}
        problems: dict[str, str] = {}
        rest = list(hashes)
        if self._raw_method:
            try:
                answers = self.rpc.batch([("eth_getRawTransactionByHash", [h]) for h in hashes])
            except RpcError as exc:  # the whole batch refused
                answers = [exc] * len(hashes)
            rest = []
            for h, answer in zip(hashes, answers, strict=True):
                if isinstance(answer, str) and answer not in ("", "0x"):
                    raws[h] = _bytes(answer)
                elif isinstance(answer, RpcError):
                    rest.append(h)  # not a method of this node (or refused): the fields
                elif isinstance(answer, Exception):
                    raise answer
            if rest and len(rest) == len(hashes):
                log.info("the node does not serve eth_getRawTransactionByHash (%s); tx/ encodes "
                         "transactions from eth_getTransactionByHash", answers[0])
                self._raw_method = False
        if not rest:
            return raws, problems
        try:
            found = self.rpc.batch([("eth_getTransactionByHash", [h]) for h in rest])
        except RpcError as exc:
            found = [exc] * len(rest)
        for h, answer in zip(rest, found, strict=True):
            if isinstance(answer, RpcError):
                problems[h] = f"the node refused it: {answer}"
            elif isinstance(answer, Exception):
                raise answer
            elif isinstance(answer, dict):
                try:
                    raws[h] = encode_signed(answer)
                except (KeyError, ValueError, TypeError) as exc:
                    problems[h] = f"cannot encode it again: {exc}"
        return raws, problems
