"""The metadata documents of one imported user, derived from the data directory.

For a user imported into the target chain (its record under ``new/``, keyed by the target
address) four documents are due:

=============== =========================== ============================================
kind            pointer                     document
=============== =========================== ============================================
``person``      person pointer of target    the ``new/`` record, as stored
``phone``       phone pointer of its phone  the target address (checksummed, ``0x``)
``custom``      custom pointer of target    ``{"tags": [...]}`` from ``tags.csv``
``preferences`` preferences ptr. of target  ``{"preferred_language": LANG}``
=============== =========================== ============================================

``LANG`` is the user's preferred language, :func:`~cic_seeding.generate.keys.preferred_language`
of the manifest's seed and the user's index: the same one USSD registration answers the
language menu with. The importer writes the documents and the metadata checks compare the
server with them, so both agree by construction. A user whose documents cannot be built (no
``new/`` record, an unreadable one, a bad ``tags.csv`` row) gets a :class:`Finding` instead,
and the others go on.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils import to_checksum_address

from cic_seeding.datadir import CheckedRows, DataDir, UserRow
from cic_seeding.generate.keys import preferred_language
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


@dataclass(frozen=True)
class Finding:
    """Why one user's document is not as it should be: ``reason`` is a sentence every user
    failing the same way shares, ``detail`` this user's particulars, ``error`` the exception
    behind it (class and text), if one was."""

    reason: str
    detail: str = ""
    error: str = ""

    def __str__(self) -> str:
        text = f"{self.reason}: {self.detail}" if self.detail else self.reason
        return f"{text} ({self.error})" if self.error else text


@dataclass(frozen=True)
class UserDocuments:
    """What the metadata server should hold for one user."""

    address: str  # the generated address (users.csv), the state store's key
    target: str  # checksummed address on the target chain
    phone: str
    person: dict[str, Any]
    tags: tuple[str, ...]
    language: str
    #: Why the user's tags.csv row cannot be used (None: it can); its custom document is then
    #: not written, and the check of it fails with this.
    tags_problem: Finding | None = None

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

    def __init__(self, data: DataDir) -> None:
        self.data = data
        self._lock = threading.Lock()
        self._tags: CheckedRows[list[str]] | None = None
        self._by_phone: dict[str, str] | None = None
        self._seed: int | None = None

    def documents(self, users: Sequence[UserRow]) -> tuple[dict[str, UserDocuments],
                                                            dict[str, Finding]]:
        """(documents by user address, why not by user address for users that have none)."""
        found: dict[str, UserDocuments] = {}
        missing: dict[str, Finding] = {}
        for user in users:
            try:
                found[user.address] = self._one(user)
            except _Unusable as exc:
                missing[user.address] = exc.finding
        return found, missing

    def _one(self, user: UserRow) -> UserDocuments:
        target = self._target(user)
        try:
            person = jsonsafe.loads(self.data.new.get(target))
            phone = phone_of(person)
        except (OSError, ValueError, KeyError, RecursionError) as exc:
            raise _Unusable(Finding("its new/ record cannot be read",
                                    str(self.data.new.path(target)),
                                    f"{type(exc).__name__}: {exc}")) from None
        tags = self._tag_rows()
        problem = tags.problem(user.address)
        return UserDocuments(
            user.address, to_checksum_address(target), phone, person,
            tuple(tags.get(user.address) or ()), preferred_language(self.seed(), user.index),
            None if problem is None else Finding("its tags.csv row is malformed", str(problem)))

    def seed(self) -> int:
        with self._lock:
            if self._seed is None:
                self._seed = self.data.manifest().seed
            return self._seed

    def _target(self, user: UserRow) -> str:
        if self.data.new.has(user.address):
            return user.address
        with self._lock:
            if self._by_phone is None:
                self._by_phone = dict(self._scan_new())
        target = self._by_phone.get(user.phone)
        if target is None:
            raise _Unusable(Finding(
                "not imported yet: new/ has no record of the user; run a chain importer first "
                "(cic-seed import eth)", f"neither its address nor phone {user.phone}"))
        return target

    def _scan_new(self) -> Iterable[tuple[str, str]]:
        keys = self.data.new.keys()  # a KeyedStore, not a dict
        for key in keys:
            try:
                yield phone_of(jsonsafe.loads(self.data.new.get(key))), "0x" + key
            except (OSError, ValueError, KeyError, RecursionError):
                continue  # reported when (if) the user is looked up directly

    def _tag_rows(self) -> CheckedRows[list[str]]:
        with self._lock:
            if self._tags is None:
                self._tags = (self.data.read_tags() if self.data.tags_csv.is_file()
                              else CheckedRows({}, {}))
            return self._tags


class _Unusable(Exception):
    """A user whose documents cannot be built, and why."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(str(finding))
        self.finding = finding
