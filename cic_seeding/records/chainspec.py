"""Chain specs: ``engine:fork:network_id:common_name``, e.g. ``evm:byzantium:8996:bloxberg``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cic_seeding.errors import UsageError

_PART = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class ChainSpec:
    engine: str
    fork: str
    network_id: int
    common_name: str

    @classmethod
    def parse(cls, text: str) -> ChainSpec:
        parts = text.split(":")
        if len(parts) != 4 or not all(_PART.fullmatch(p) for p in parts) or not parts[2].isdigit():
            raise UsageError(
                f"malformed chain spec {text!r}: expected engine:fork:network_id:common_name "
                "with an integer network id, e.g. evm:byzantium:8996:bloxberg")
        return cls(parts[0], parts[1], int(parts[2]), parts[3])

    @property
    def network_key(self) -> str:
        """The key under ``identities[engine][fork]`` in a person record."""
        return f"{self.network_id}:{self.common_name}"

    def __str__(self) -> str:
        return f"{self.engine}:{self.fork}:{self.network_id}:{self.common_name}"
