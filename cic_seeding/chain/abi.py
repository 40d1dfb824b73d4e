"""Contract ABIs from the committed artifacts: call data encoding and result decoding.

Encoding goes through eth-abi directly (a selector and a tuple of types per function), which is
what lets the importers and the verifier build thousands of calls per second.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from eth_abi import decode, encode
from eth_utils import keccak

from cic_seeding.errors import ContractError


def _types(params: list[dict[str, Any]]) -> tuple[str, ...]:
    out = []
    for p in params:
        t = p["type"]
        if t.startswith("tuple"):
            t = "(" + ",".join(_types(p["components"])) + ")" + t[len("tuple"):]
        out.append(t)
    return tuple(out)


@dataclass(frozen=True)
class Function:
    name: str
    selector: bytes
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def encode(self, *args: Any) -> bytes:
        return self.selector + encode(list(self.inputs), list(args))

    def decode(self, data: bytes) -> Any:
        """The return value: one value unwrapped, several as a tuple."""
        values = decode(list(self.outputs), data)
        return values[0] if len(values) == 1 else tuple(values)


class ContractAbi:
    """The ABI and creation code of one of our contracts (or any ABI list)."""

    def __init__(self, name: str, abi: list[dict[str, Any]], bytecode: str = "") -> None:
        self.name = name
        self.abi = abi
        self.bytecode = bytes.fromhex(bytecode.removeprefix("0x"))
        self.functions: dict[str, Function] = {}
        self.events: dict[str, str] = {}
        self._constructor: tuple[str, ...] = ()
        for item in abi:
            if item["type"] == "function":
                inputs = _types(item["inputs"])
                signature = f"{item['name']}({','.join(inputs)})"
                self.functions[item["name"]] = Function(
                    item["name"], keccak(text=signature)[:4], inputs, _types(item["outputs"]))
            elif item["type"] == "event":
                signature = f"{item['name']}({','.join(_types(item['inputs']))})"
                self.events[item["name"]] = "0x" + keccak(text=signature).hex()
            elif item["type"] == "constructor":
                self._constructor = _types(item["inputs"])

    def fn(self, name: str) -> Function:
        try:
            return self.functions[name]
        except KeyError:
            raise ContractError(f"{self.name} has no function {name!r}") from None

    def encode(self, fn: str, *args: Any) -> bytes:
        return self.fn(fn).encode(*args)

    def topic(self, event: str) -> str:
        return self.events[event]

    def deploy_data(self, *args: Any) -> bytes:
        return self.bytecode + encode(list(self._constructor), list(args))


@functools.cache
def artifact(name: str) -> ContractAbi:
    """One of the committed artifacts (``Registry``, ``AccountsIndex``, ``GiftableToken`` ...)."""
    try:
        text = resources.files("cic_seeding.chain.artifacts").joinpath(f"{name}.json").read_text()
    except FileNotFoundError:
        raise ContractError(f"no compiled artifact for contract {name!r}") from None
    doc = json.loads(text)
    return ContractAbi(name, doc["abi"], doc.get("bytecode", ""))
