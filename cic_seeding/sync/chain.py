"""The syncer's view of a CIC network (implements :class:`~cic_seeding.sync.port.SyncChain`).

Registrations are the ``AddressAdded`` logs of *the registry's* AccountsIndex only: an
``add(address)`` on any other contract is never seen. :meth:`RegistryChain.prepaid` tells from
the transaction that emitted a registration whether it also paid the opening balance (a
BatchFunder ``registerAndFund``), so the syncer never pays it again. :meth:`RegistryChain.paid`
reads whether a payment whose transaction was replaced reached the user anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import groupby
from typing import Any

from cic_seeding.chain.funder import funded_in
from cic_seeding.chain.registry import ACCOUNTS_INDEX, ADDRESS_ADDED, FAUCET, TOKEN, CicNetwork
from cic_seeding.errors import RpcUnavailableError
from cic_seeding.state import FAUCET as FAUCET_KIND
from cic_seeding.state import FUND, GAS
from cic_seeding.sync._ranges import LogReader

#: Registering transactions remembered at most (beyond the last range read): a syncer following
#: a busy network reads everybody's registrations, and keeping each one's hash would grow
#: without end. One forgotten is read again from its block's logs when it is asked for.
KEEP_TXS = 50_000


def _int(value: str | int) -> int:
    return int(value, 16) if isinstance(value, str) else value


class RegistryChain:
    def __init__(self, network: CicNetwork, chain_key: str, *, token: str | None = None,
                 mint: bool = False, plain: Callable[[Sequence[str]], set[str]] | None = None,
                 keep: int = KEEP_TXS) -> None:
        """``token``: the token opening balances are paid in (transferred, or ``mint``ed).
        ``plain``: which of some transaction hashes are known to be plain ``add`` calls (our
        own registrations, from the outbox): they paid nothing, so :meth:`prepaid` does not
        fetch them. ``keep``: registering transactions remembered beyond the last range read
        (:data:`KEEP_TXS`)."""
        self.network = network
        self.plain = plain
        self.token = token
        self.mint = mint
        self.client = network.client
        self.chain_key = chain_key
        assert self.client.signer is not None, "the syncer needs a signer"
        self.signer = self.client.signer.address.lower()
        self.index = network.accounts_index
        self.keep = keep
        self._tx_of: dict[tuple[int, str], str] = {}  # (block, address) -> registering tx

    def head(self) -> int:
        return self.client.head()

    def block_hashes(self, numbers: Sequence[int]) -> dict[int, str]:
        return self.client.block_hashes(numbers)

    def registrations(self, first: int, last: int) -> list[tuple[int, str]]:
        if len(self._tx_of) > self.keep:
            self._tx_of.clear()  # what is asked for later is read again (_recall)
        return self._read(first, last)

    def _read(self, first: int, last: int) -> list[tuple[int, str]]:
        logs = self.client.logs(self.index, ADDRESS_ADDED, first, last)
        out = []
        for entry in sorted(logs, key=lambda e: (_int(e["blockNumber"]), _int(e["logIndex"]))):
            if entry.get("removed"):
                continue
            item = (_int(entry["blockNumber"]), "0x" + str(entry["data"])[-40:].lower())
            out.append(item)
            if entry.get("transactionHash"):
                self._tx_of[item] = str(entry["transactionHash"])
        return out

    def _recall(self, registrations: Sequence[tuple[int, str]]) -> None:
        """Read again the blocks of those ``registrations`` whose transactions were forgotten
        (more than ``keep`` registrations read since)."""
        blocks = sorted({b for b, a in registrations if (b, a) not in self._tx_of})
        for _, run in groupby(enumerate(blocks), lambda ib: ib[1] - ib[0]):  # consecutive
            numbers = [b for _, b in run]
            self._read(numbers[0], numbers[-1])

    def registering_txs(self, registrations: Sequence[tuple[int, str]]) -> dict[str, str]:
        self._recall(registrations)
        return {address: self._tx_of[(block, address)] for block, address in registrations
                if (block, address) in self._tx_of}

    def prepaid(self, registrations: Sequence[tuple[int, str]]
                ) -> dict[str, tuple[int, str, int]]:
        """``{address: (block, tx_hash, amount)}`` of those ``registrations`` (as returned by
        :meth:`registrations`) whose own transaction also paid the opening balance."""
        self._recall(registrations)
        txs = {item: self._tx_of.pop(item) for item in registrations if item in self._tx_of}
        hashes = list(dict.fromkeys(txs.values()))
        if self.plain is not None and hashes:
            known = self.plain(hashes)
            hashes = [h for h in hashes if h not in known]
        answers = self.client.rpc.batch([("eth_getTransactionByHash", [h]) for h in hashes])
        funded: dict[str, dict[str, int] | None] = {}
        for h, tx in zip(hashes, answers, strict=True):
            if isinstance(tx, Exception):
                raise tx
            if not isinstance(tx, dict):  # a logged transaction the node does not know
                raise RpcUnavailableError(f"eth_getTransactionByHash({h}) found nothing for a "
                                          "logged registration; is the node reorganising?")
            paid = funded_in(str(tx.get("input") or tx.get("data") or "0x"), self.index)
            funded[h] = dict(paid) if paid is not None else None
        out = {}
        for (block, address), h in txs.items():
            amount = (funded.get(h) or {}).get(address, 0)
            if amount > 0:
                out[address] = (block, h, amount)
        return out

    def registered(self, addresses: Sequence[str]) -> set[str]:
        have = self.client.call_many([(self.index, ACCOUNTS_INDEX.fn("have"), (a,))
                                      for a in addresses])
        return {a.lower() for a, h in zip(addresses, have, strict=True) if h is True}

    def faucet_paid(self, addresses: Sequence[str]) -> set[str]:
        if not addresses:
            return set()
        faucet = self.network.faucet
        times = self.client.call_many([(faucet, FAUCET.fn("nextTime"), (a,)) for a in addresses])
        out = set()
        for a, t in zip(addresses, times, strict=True):
            if isinstance(t, Exception):
                raise t
            if t:
                out.add(a.lower())
        return out

    def paid(self, kind: str, addresses: Sequence[str]) -> set[str]:
        if not addresses:
            return set()
        if kind == FAUCET_KIND:
            return self.faucet_paid(addresses)
        if kind == GAS:
            client = self.client
            counts = client.nonces(addresses)
            balances = client.native_balances(addresses)
            return {a.lower() for a, b in zip(addresses, balances, strict=True)
                    if b > 0 or counts[a][0] > 0}
        if kind == FUND and self.token is not None:
            return self._token_paid(addresses)
        return set()

    def _token_paid(self, addresses: Sequence[str]) -> set[str]:
        """Recipients among ``addresses`` of a Transfer (or, minting, a Mint) from the signer
        anywhere on the chain."""
        topic = TOKEN.topic("Mint") if self.mint else TOKEN.topic("Transfer")
        me = "0x" + self.signer[2:].rjust(64, "0")
        out: set[str] = set()
        head = self.client.head()
        for i in range(0, len(addresses), 100):
            chunk = ["0x" + a.lower()[2:].rjust(64, "0") for a in addresses[i:i + 100]]

            def get_logs(first: int, last: int, chunk: list[str] = chunk) -> list[Any]:
                return list(self.client.rpc.call("eth_getLogs", [{
                    "address": self.token, "topics": [topic, me, chunk],
                    "fromBlock": hex(first), "toBlock": hex(last)}]))

            for _, _, logs in LogReader(get_logs, span=100_000, max_span=1_000_000).read(
                    0, head + 1):
                out.update("0x" + str(e["topics"][2])[-40:].lower() for e in logs
                           if not e.get("removed"))
        return out
