"""The metadata checks: the metadata server holds each user's four documents as imported.

``metadata`` (person document = the ``new/`` record), ``metadata_phone`` (phone pointer ->
the address), ``metadata_custom`` (tags = tags.csv) and ``metadata_preferences`` (preferences
with the user's ``preferred_language``, :func:`~cic_seeding.generate.keys.preferred_language`).
A user whose ``new/`` record cannot be read or whose tags.csv row is bad fails the documents
that need it, with what is wrong; the others are checked as usual. The four share one client
and read each batch once, all kinds together, ``meta_concurrency`` requests in flight
(:func:`cic_seeding.meta.audit.audit`).

They need a metadata server (``meta_url``, or a devnet started with ``--meta``); without one
they are skipped unless asked for by name, which is then a configuration error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from cic_seeding.config import Settings
from cic_seeding.datadir import UserRow
from cic_seeding.meta.audit import audit
from cic_seeding.meta.client import MetaClient
from cic_seeding.meta.documents import (
    CUSTOM,
    PERSON,
    PHONE,
    PREFERENCES,
    DocumentSource,
    Finding,
)
from cic_seeding.verify.base import Check, CheckContext, Verdict, VerifyUser

_SHARED = "metadata"


def metadata_unconfigured(settings: Settings) -> str | None:
    """Why no metadata server can be reached with ``settings`` (None: one is configured)."""
    if settings.meta_url:
        return None
    return ("no metadata server is configured: set meta_url (CIC_META_URL, --meta-url) or use "
            "a devnet started with --meta")


class _MetaReader:
    """Reads every wanted kind of document of one batch at once and remembers that batch."""

    def __init__(self, ctx: CheckContext) -> None:
        self._settings = ctx.settings
        self._source = DocumentSource(ctx.data)
        self._kinds: set[str] = set()
        self._client: MetaClient | None = None
        self._batch: tuple[str, ...] = ()
        self._failures: dict[str, dict[str, Finding]] = {}

    def want(self, kind: str) -> None:
        self._kinds.add(kind)

    def failures(self, users: Sequence[VerifyUser], kind: str) -> dict[str, Finding]:
        """``{user address: reason}`` of the users in ``users`` failing ``kind``."""
        key = tuple(u.address for u in users)
        if key != self._batch:
            rows = [UserRow(u.index, u.address, u.phone) for u in users]
            report = audit(self.client(), self._source, rows, self._kinds,
                           concurrency=max(1, self._settings.meta_concurrency))
            self._failures = {k: dict(a.failures) for k, a in report.items()}
            self._batch = key
        return self._failures[kind]

    def client(self) -> MetaClient:
        if self._client is None:
            from cic_seeding.importers.meta import meta_client

            self._client = meta_client(self._settings)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class MetadataCheck(Check):
    """One kind of metadata document per user; subclasses set ``kind``."""

    id = "metadata"
    description = "the person document on the metadata server equals the record under new/"
    groups = ("metadata",)
    backends = ("meta",)
    kind: ClassVar[str] = PERSON

    def __init__(self, ctx: CheckContext) -> None:
        super().__init__(ctx)
        reader = ctx.shared.get(_SHARED)
        if not isinstance(reader, _MetaReader):
            reader = ctx.shared[_SHARED] = _MetaReader(ctx)
        self._reader = reader
        reader.want(self.kind)

    @classmethod
    def unavailable(cls, settings: Settings) -> str | None:
        return metadata_unconfigured(settings)

    def check(self, users: Sequence[VerifyUser]) -> Mapping[str, Verdict]:
        failures = self._reader.failures(users, self.kind)
        out = {}
        for u in users:
            why = failures.get(u.address)
            out[u.address] = Verdict.passed() if why is None else Verdict.failed(
                why.reason, why.detail, why.error or None)
        return out

    def close(self) -> None:
        self._reader.close()


class MetadataPhoneCheck(MetadataCheck):
    id = "metadata_phone"
    description = "the user's phone pointer on the metadata server resolves to its address"
    kind = PHONE


class MetadataCustomCheck(MetadataCheck):
    id = "metadata_custom"
    description = "the custom document on the metadata server holds the user's tags (tags.csv)"
    kind = CUSTOM


class MetadataPreferencesCheck(MetadataCheck):
    id = "metadata_preferences"
    description = ("the preferences document on the metadata server holds the user's "
                   "preferred_language")
    kind = PREFERENCES
