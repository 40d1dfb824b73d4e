"""Compare what a metadata server holds with what the data directory says it should.

One comparison per document kind (the verifier's ``metadata``, ``metadata_phone``,
``metadata_custom`` and ``metadata_preferences`` checks are built on it). Reads go out in
parallel, ``concurrency`` at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cic_seeding.datadir import UserRow
from cic_seeding.meta.client import Document, MetaClient
from cic_seeding.meta.documents import (
    CUSTOM,
    KINDS,
    PERSON,
    PHONE,
    PREFERENCES,
    DocumentSource,
    Finding,
    UserDocuments,
)


@dataclass
class KindAudit:
    """Result of one document kind: how many users were checked and who failed why."""

    kind: str
    checked: int = 0
    failures: list[tuple[str, Finding]] = field(default_factory=list)  # (user address, why)

    @property
    def failed(self) -> int:
        return len(self.failures)


def compare(kind: str, expected: Document, got: Document | None) -> Finding | None:
    """Why ``got`` is not the expected document of ``kind`` (None: it is)."""
    if got is None:
        return Finding(f"its {kind} document is missing on the metadata server")
    if kind == PHONE:
        ok = isinstance(got, str) and isinstance(expected, str) and got.lower() == expected.lower()
        return None if ok else Finding("its phone pointer resolves to another address",
                                       f"{got!r}, expected {expected!r}")
    if kind == CUSTOM:
        tags = got.get("tags") if isinstance(got, dict) else None
        want = expected["tags"] if isinstance(expected, dict) else None
        ok = isinstance(tags, list) and isinstance(want, list) and sorted(tags) == sorted(want)
        return None if ok else Finding("its custom document holds other tags than tags.csv",
                                       f"tags {tags!r}, expected {want!r}")
    if kind == PREFERENCES:
        lang = got.get("preferred_language") if isinstance(got, dict) else None
        want = expected.get("preferred_language") if isinstance(expected, dict) else None
        return None if lang == want else Finding(
            "its preferences document holds another preferred_language than the user's",
            f"preferred_language {lang!r}, expected {want!r}")
    if got != expected:
        return Finding("its person document differs from the new/ record",
                       _first_difference(expected, got))
    return None


def _first_difference(expected: Document, got: Document) -> str:
    if isinstance(expected, dict) and isinstance(got, dict):
        for key in sorted(set(expected) | set(got)):
            if expected.get(key) != got.get(key):
                return f"first at key {key!r}"
    return ""


def audit(client: MetaClient, source: DocumentSource, users: Sequence[UserRow],
          kinds: Iterable[str] = KINDS, *, concurrency: int = 16) -> dict[str, KindAudit]:
    """Check ``kinds`` of documents of ``users``; a user without a ``new/`` record fails each,
    one with a bad tags.csv row fails ``custom`` (unread)."""
    kinds = [k for k in KINDS if k in set(kinds)]
    results = {k: KindAudit(k) for k in kinds}
    found, missing = source.documents(users)
    for address, why in missing.items():
        for k in kinds:
            results[k].checked += 1
            results[k].failures.append((address, why))
    wanted: list[tuple[UserDocuments, str, str, Document]] = []
    for docs in found.values():
        for kind, pointer, doc in docs.items():
            if kind not in results:
                continue
            if kind == CUSTOM and docs.tags_problem is not None:
                results[kind].checked += 1
                results[kind].failures.append((docs.address, docs.tags_problem))
                continue
            wanted.append((docs, kind, pointer, doc))
    served = client.get_many([w[2] for w in wanted], concurrency=concurrency)
    for docs, kind, pointer, doc in wanted:
        results[kind].checked += 1
        mismatch = compare(kind, doc, served.get(pointer))
        if mismatch is not None:
            if not mismatch.detail:  # say which document
                mismatch = Finding(mismatch.reason, f"pointer {pointer[:16]}..", mismatch.error)
            results[kind].failures.append((docs.address, mismatch))
    return results


__all__ = ["KINDS", "Finding", "KindAudit", "PERSON", "audit", "compare"]
