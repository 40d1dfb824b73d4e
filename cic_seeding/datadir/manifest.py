"""manifest.json: what the dataset is, so nothing downstream hard-codes it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cic_seeding.errors import ManifestError

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"


@dataclass
class Manifest:
    tool_version: str
    seed: int
    count: int
    decimals: int
    chain_spec: str
    tags: list[str]
    gift_threshold: int
    locale: str
    epoch: int
    transactions: int = 0
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def dumps(self) -> bytes:
        return (json.dumps(asdict(self), sort_keys=True, indent=2) + "\n").encode()

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ManifestError(
                f"{path} is missing: {directory} is not a generated data directory",
                hint="run `cic-seed generate --dir DIR COUNT` first") from None
        except (OSError, ValueError) as exc:
            raise ManifestError(f"{path} cannot be read as JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ManifestError(f"{path} must hold a JSON object")
        version = data.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ManifestError(
                f"{path} has schema version {version!r}; this cic-seeding reads up to "
                f"{SCHEMA_VERSION}", hint="upgrade cic-seeding or regenerate the data")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ManifestError(f"{path} has unexpected or missing keys: {exc}") from None
