"""The ``cic_meta`` importer: every imported user's metadata documents onto the metadata server.

Runs after a chain importer (it reads ``new/``). Per user it writes the person, phone, custom
(tags) and preferences documents (see :mod:`cic_seeding.meta.documents`). Writes run on a pool
of ``meta_concurrency`` threads and overlap across batches; the metadata client retries
transient failures, the base class keeps per-user state and resumes. A repeated write of the
same document is a no-op on the server (ETag), so a resumed run never duplicates anything.

When the server takes batch writes (the devnet's does, ``PUT /_batch``; ``meta_batch``
documents a request), each request carries many users' documents and the server stores them in
one transaction: the per-request cost of both sides (HTTP, framework, commit) is what bounds
one PUT per document. A server without them gets one PUT per document, as before.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cic_seeding.config import Settings
from cic_seeding.datadir import UserRow
from cic_seeding.errors import (
    ConfigError,
    ImporterError,
    MetadataRequestError,
    MetadataUnavailableError,
)
from cic_seeding.importers.base import Importer, Outcome, Submission
from cic_seeding.meta.client import BatchOutcome, Document, MetaClient, PutResult
from cic_seeding.meta.documents import DocumentSource, UserDocuments
from cic_seeding.remote import BreakerPolicy

META = "meta"  # transaction kind recorded in the state store


@dataclass(frozen=True)
class _Write:
    """One document's write: the future of its own PUT (``index`` None), or of the batch
    request it went in, at ``index`` of that request's outcomes."""

    future: Future[Any]
    index: int | None = None

    def exception(self) -> BaseException | None:
        """Why this document was not written (None: it was); after the future is done."""
        error = self.future.exception()
        if error is not None or self.index is None:
            return error
        outcome = self.future.result()[self.index]
        return outcome if isinstance(outcome, BaseException) else None


def meta_client(settings: Settings, **kw: Any) -> MetaClient:
    """A client for the metadata server the settings name (URL and write token)."""
    url, token_file = settings.meta_url, settings.meta_token_file
    if not url:
        raise ConfigError("no metadata server URL",
                          hint="set CIC_META_URL (or meta_url in the config file), or use a "
                          "devnet started with `cic-seed devnet up --meta`")
    token = settings.meta_token
    if not token and token_file:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read meta_token_file {token_file}: "
                              f"{exc.strerror}") from None
    kw.setdefault("timeout", settings.rpc_timeout)
    kw.setdefault("retries", settings.meta_retries)
    kw.setdefault("pool_size", max(settings.meta_concurrency, 1))
    kw.setdefault("breaker", BreakerPolicy.from_settings(settings))
    kw.setdefault("batch", max(settings.meta_batch, 0))
    return MetaClient(url, token, **kw)


class MetaImporter(Importer):
    """Writes the four metadata documents of every user a chain importer has imported."""

    name = "cic_meta"
    custody = None  # it writes documents of another importer's users
    found_where = None  # every document is put again (the same one is a no-op on the server)

    def __init__(self, settings: Settings, *, client: MetaClient | None = None,
                 **kw: Any) -> None:
        super().__init__(settings, **kw)
        self.concurrency = max(1, settings.meta_concurrency)
        self.client = client or meta_client(settings)
        self.source = DocumentSource(self.data)
        self._docs: dict[str, UserDocuments] = {}
        self._writes: dict[str, list[_Write]] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        # Set by the first write that finds the server unavailable (after its own retries):
        # queued writes then fail at once instead of each retrying a dead server in turn.
        self._down: MetadataUnavailableError | None = None

    # -- primitives ------------------------------------------------------------------------
    def prepare(self, users: Sequence[UserRow]) -> Mapping[str, str]:
        found, missing = self.source.documents(users)
        bad = {a: str(why) for a, why in missing.items()}
        bad.update((a, str(d.tags_problem)) for a, d in found.items() if d.tags_problem)
        with self._lock:
            self._docs.update((a, d) for a, d in found.items() if a not in bad)
        return bad

    def sends(self, users: Sequence[UserRow]) -> list[str]:
        return [f"{4 * len(users)} metadata documents (PUT: person, phone, custom, "
                "preferences)"]

    def done_on_chain(self, users: Sequence[UserRow]) -> Mapping[str, str | None]:
        # Writes are idempotent (same document: no-op on the server), so a user not confirmed
        # in the state store is simply written again rather than read back first.
        return {}

    def begin(self) -> None:
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="cic_meta")

    def submit(self, users: Sequence[UserRow]) -> list[Submission]:
        size = self.client.batch_size()
        subs = []
        queued: list[tuple[str, Document]] = []
        slots: list[list[_Write]] = []  # each queued document's place, filled per batch
        for user in users:
            docs = self._user_docs(user.address)
            items = docs.items()
            writes: list[_Write] = []
            if size:
                queued += [(p, d) for _, p, d in items]
                slots += [writes] * len(items)
            else:
                writes += [_Write(self._write(p, d)) for _, p, d in items]
            self._writes[user.address] = writes
            subs.append(Submission(user.address, items[0][1], docs.target, META))
        for start in range(0, len(queued), size or 1):
            future = self._pool_submit(self._put_batch, queued[start:start + size])
            for index, user_writes in enumerate(slots[start:start + size]):
                user_writes.append(_Write(future, index))
        return subs

    def outcomes(self, submissions: Sequence[Submission]) -> list[Outcome]:
        wait({w.future for s in submissions for w in self._writes[s.address]})
        self._stop_the_run(submissions)
        out = []
        for sub in submissions:
            errors = [w.exception() for w in self._writes[sub.address]]
            failed = [e for e in errors if e is not None]
            if failed:
                out.append(Outcome(sub.address, False, sub.target, reason=str(failed[0])))
            else:
                out.append(Outcome(sub.address, True, sub.target))
            del self._writes[sub.address]
            with self._lock:
                self._docs.pop(sub.address, None)
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self.client.close()
        super().close()

    # -- helpers ---------------------------------------------------------------------------
    def _user_docs(self, address: str) -> UserDocuments:
        with self._lock:
            docs = self._docs.get(address)
        if docs is None:  # prepare() reported it, so the base never submits it
            raise ImporterError(f"{self.name}: no documents prepared for {address}")
        return docs

    def _write(self, pointer: str, doc: Any) -> Future[PutResult]:
        return self._pool_submit(self._put, pointer, doc)

    def _pool_submit(self, fn: Any, *args: Any) -> Future[Any]:
        if self._pool is None:
            raise ImporterError(f"{self.name}: submit() before begin()")
        return self._pool.submit(fn, *args)

    def _put_batch(self, part: list[tuple[str, Document]]) -> list[BatchOutcome]:
        """One batch write: each document's result or refusal; raises what concerns the
        whole request (the server away: later writes then fail at once, as for single PUTs)."""
        down = self._down
        if down is not None:
            raise down
        try:
            return self.client.put_batch(part)
        except MetadataUnavailableError as exc:
            self._down = exc
            raise

    def _put(self, pointer: str, doc: Any) -> PutResult:
        down = self._down
        if down is not None:
            raise down
        try:
            return self.client.put(pointer, doc)
        except MetadataUnavailableError as exc:
            self._down = exc
            raise

    def _stop_the_run(self, submissions: Sequence[Submission]) -> None:
        """Raise what no other user's write can get past: a refusal of every request (a wrong
        token, not a metadata server), or a server still away after the client's retries (or
        behind its open breaker). That error is exhausted: the base class passes it on."""
        down: MetadataUnavailableError | None = None
        for sub in submissions:
            for write in self._writes[sub.address]:
                exc = write.exception()
                if isinstance(exc, MetadataRequestError) and exc.fatal:
                    raise exc  # a wrong token, not a metadata server: stop and say so
                if isinstance(exc, MetadataUnavailableError):
                    down = down or exc
        if down is not None:
            raise down
