"""The metadata documents of one imported user, derived from the data directory.

For a user imported into the target chain (its record under ``new/``, keyed by the target
address) four documents are due:

=============== =========================== ============================================
kind            pointer                     document
=============== =========================== ============================================
``person``      person pointer of target    the ``new/`` record, as stored
``phone``       phone pointer of its phone  the target address (checksummed, ``0x``)
``custom``      custom pointer of target    ``{"tags": [...]}`` from ``tags.csv``
``preferences`` preferences ptr. of target  ``{"preferred_language": "en"}``
=============== =========================== ============================================

The importer writes them and the metadata checks compare the server with them, so both agree
by construction.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils import to_checksum_address

from cic_seeding.datadir import DataDir, UserRow
from cic_seeding.meta.client import Document
from cic_seeding.records import jsonsafe
from cic_seeding.records.person import phone_of
from cic_seeding.records.pointers import (
    custom_pointer,
    person_pointer,
    phone_pointer,
    preferences_pointer,
)

PERSON, PHONE, CUSTOM, PREFERENCES = "person", "phone", "custom", "preferences"
KINDS = (PERSON, PHONE, CUSTOM, PREFERENCES)
DEFAULT_LANGUAGE = "en"


@dataclass(frozen=True)
class UserDocuments:
    """What the metadata server should hold for one user."""

    address: str  # the generated address (users.csv), the state store's key
    target: str  # checksummed address on the target chain
    phone: str
    person: dict[str, Any]
    tags: tuple[str, ...]
    language: str = DEFAULT_LANGUAGE

    def items(self) -> list[tuple[str, str, Document]]:
        """``(kind, pointer, document)`` for each of the four documents."""
        return [
            (PERSON, person_pointer(self.target), self.person),
            (PHONE, phone_pointer(self.phone), self.target),
            (CUSTOM, custom_pointer(self.target), {"tags": list(self.tags)}),
            (PREFERENCES, preferences_pointer(self.target),
             {"preferred_language": self.language}),
        ]


class DocumentSource:
    """Builds :class:`UserDocuments` from a data directory. Thread-safe.

    A user's target address is its own address when ``new/`` holds it (sovereign importers);
    otherwise the ``new/`` record with the same phone number names it (custodial importers
    assign new addresses). That phone index is built once, on the first such user.
    """

    def __init__(self, data: DataDir, language: str = DEFAULT_LANGUAGE) -> None:
        self.data = data
        self.language = language
        self._lock = threading.Lock()
        self._tags: dict[str, list[str]] | None = None
        self._by_phone: dict[str, str] | None = None

    def documents(self, users: Sequence[UserRow]) -> tuple[dict[str, UserDocuments],
                                                            dict[str, str]]:
        """(documents by user address, reason by user address for users that have none)."""
        found: dict[str, UserDocuments] = {}
        missing: dict[str, str] = {}
        for user in users:
            try:
                found[user.address] = self._one(user)
            except LookupError as exc:
                missing[user.address] = str(exc.args[0])
            except (OSError, ValueError, KeyError, RecursionError) as exc:
                missing[user.address] = f"its new/ record cannot be read: {exc}"
        return found, missing

    def _one(self, user: UserRow) -> UserDocuments:
        target = self._target(user)
        person = jsonsafe.loads(self.data.new.get(target))
        phone = phone_of(person)
        tags = self._tag_map().get(user.address[2:].lower(), [])
        return UserDocuments(user.address, to_checksum_address(target), phone, person,
                             tuple(tags), self.language)

    def _target(self, user: UserRow) -> str:
        if self.data.new.has(user.address):
            return user.address
        with self._lock:
            if self._by_phone is None:
                self._by_phone = dict(self._scan_new())
        target = self._by_phone.get(user.phone)
        if target is None:
            raise LookupError(
                f"not imported yet: no record under {self.data.new.root} for {user.address} "
                f"or phone {user.phone}; run a chain importer first (cic-seed import eth)")
        return target

    def _scan_new(self) -> Iterable[tuple[str, str]]:
        keys = self.data.new.keys()  # a KeyedStore, not a dict
        for key in keys:
            try:
                yield phone_of(jsonsafe.loads(self.data.new.get(key))), "0x" + key
            except (OSError, ValueError, KeyError, RecursionError):
                continue  # reported when (if) the user is looked up directly

    def _tag_map(self) -> dict[str, list[str]]:
        with self._lock:
            if self._tags is None:
                self._tags = self.data.tags() if self.data.tags_csv.is_file() else {}
            return self._tags
