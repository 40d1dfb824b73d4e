"""manifest.json: what the dataset is, so nothing downstream hard-codes it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cic_seeding.errors import ManifestError
from cic_seeding.records import jsonsafe

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
            data = jsonsafe.loads(path.read_text(encoding="utf-8"))
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
            manifest = cls(**data)
        except TypeError as exc:
            raise ManifestError(f"{path} has unexpected or missing keys: {exc}") from None
        problem = manifest._type_problem()
        if problem:
            raise ManifestError(f"{path}: {problem}", hint="regenerate the data (or fix the "
                                "value by hand)")
        return manifest

    def _type_problem(self) -> str | None:
        """What in this manifest has a type or range the tool cannot compute with (None: ok)."""
        for name, low, high in (("seed", None, None), ("count", 0, None), ("decimals", 0, 77),
                                ("gift_threshold", 0, None), ("epoch", 0, None),
                                ("transactions", 0, None), ("schema_version", 1, None)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) \
                    or (low is not None and value < low) or (high is not None and value > high):
                span = "" if low is None else f" >= {low}" if high is None \
                    else f" in [{low}, {high}]"
                return f"{name} must be an integer{span}, got {value!r}"
        for name in ("tool_version", "chain_spec", "locale"):
            if not isinstance(getattr(self, name), str):
                return f"{name} must be a string, got {getattr(self, name)!r}"
        if not isinstance(self.tags, list) or not all(isinstance(t, str) for t in self.tags):
            return f"tags must be a list of strings, got {self.tags!r}"
        if not isinstance(self.extra, dict):
            return f"extra must be an object, got {self.extra!r}"
        return None
