"""The syncer's view of a CIC network (implements :class:`~cic_seeding.sync.port.SyncChain`).

Registrations are the ``AddressAdded`` logs of *the registry's* AccountsIndex only: an
``add(address)`` on any other contract is never seen. :meth:`RegistryChain.prepaid` tells from
the transaction that emitted a registration whether it also paid the opening balance (a
BatchFunder ``registerAndFund``), so the syncer never pays it again.
"""

from __future__ import annotations

from collections.abc import Sequence

from cic_seeding.chain.funder import funded_in
from cic_seeding.chain.registry import ACCOUNTS_INDEX, ADDRESS_ADDED, FAUCET, CicNetwork
from cic_seeding.chain.tx import Call, Receipt
from cic_seeding.errors import RpcUnavailableError


def _int(value: str | int) -> int:
    return int(value, 16) if isinstance(value, str) else value


class RegistryChain:
    def __init__(self, network: CicNetwork, chain_key: str) -> None:
        self.network = network
        self.client = network.client
        self.chain_key = chain_key
        assert self.client.signer is not None, "the syncer needs a signer"
        self.signer = self.client.signer.address.lower()
        self.index = network.accounts_index
        self._tx_of: dict[tuple[int, str], str] = {}  # (block, address) -> registering tx

    def head(self) -> int:
        return self.client.head()

    def block_hashes(self, numbers: Sequence[int]) -> dict[int, str]:
        return self.client.block_hashes(numbers)

    def registrations(self, first: int, last: int) -> list[tuple[int, str]]:
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

    def prepaid(self, registrations: Sequence[tuple[int, str]]
                ) -> dict[str, tuple[int, str, int]]:
        """``{address: (block, tx_hash, amount)}`` of those ``registrations`` (as returned by
        :meth:`registrations`) whose own transaction also paid the opening balance."""
        txs = {item: self._tx_of.pop(item) for item in registrations if item in self._tx_of}
        hashes = list(dict.fromkeys(txs.values()))
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

    def pending_nonce(self) -> int:
        return self.client.pending_nonce()

    def sign(self, call: Call, nonce: int) -> tuple[str, str]:
        signed = self.client.sign(call, nonce)
        return signed.tx_hash, signed.raw

    def broadcast(self, raws: Sequence[str]) -> list[str | None]:
        return self.client.broadcast(raws)

    def receipts(self, tx_hashes: Sequence[str]) -> dict[str, Receipt]:
        found = self.client.receipts(tx_hashes)
        missing = [h for h in tx_hashes if h not in found]
        if missing and self.client.explicit_mining:
            self.client.mine()  # a dev node mines only when asked: maybe nobody asked yet
            found.update(self.client.receipts(missing))
        return found

    def known(self, tx_hashes: Sequence[str]) -> set[str]:
        return self.client.known(tx_hashes)
