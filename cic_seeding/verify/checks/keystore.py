"""The local key check: the user's v3 keyfile under ``keystore/`` decrypts to its address.

Decryption is scrypt (on OpenSSL, :func:`~cic_seeding.chain.keyfile.decrypt_v3`), so batches
are spread over a process pool (``settings.workers``); a worker stretches the password once per
salt (the keyfiles an import chunk wrote share one).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import ClassVar

from cic_seeding.chain.keyfile import decrypt_v3
from cic_seeding.datadir import keyfile_path
from cic_seeding.generate.keys import address_of
from cic_seeding.verify.base import (
    CUSTODIAL,
    CUSTODIAL_USERS,
    Check,
    ImportState,
    Verdict,
    VerifyUser,
)

#: Why a keyfile fails: ``(reason, detail, error)``; None: it decrypts to its address.
Why = tuple[str, str, str] | None


def _decrypt_chunk(keystore: str, addresses: Sequence[str], password: str) -> dict[str, Why]:
    """Per address: None if its keyfile decrypts to it, else why not."""
    stretched: dict[tuple[object, ...], bytes] = {}  # files of one import chunk share a salt
    return {a: _decrypt_one(Path(keystore), a, password, stretched) for a in addresses}


def _decrypt_one(keystore: Path, address: str, password: str,
                 stretched: dict[tuple[object, ...], bytes]) -> Why:
    path = keyfile_path(keystore, address)
    name = f"{keystore.name}/{path.name}"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "there is no keyfile for the user under keystore/", name, ""
    except (OSError, ValueError) as exc:
        return "its keyfile cannot be read as JSON", name, f"{type(exc).__name__}: {exc}"
    try:
        key = decrypt_v3(doc, password, stretched=stretched)
    except Exception as exc:  # a bad file raises ValueError/KeyError/TypeError/...
        return ("its keyfile does not decrypt with keystore_password", name,
                f"{type(exc).__name__}: {exc}")
    found = address_of(key).lower()
    if found == address.lower():
        return None
    return "its keyfile holds the key of another address", f"{name} holds the key of {found}", ""



class LocalKeyCheck(Check):
    id = "local_key"
    description = "the user's keyfile under keystore/ decrypts (keystore_password) to its address"
    groups = ("keystore",)
    backends = ("keystore",)
    #: Batches smaller than this are decrypted in this process.
    INLINE_BELOW: ClassVar[int] = 8

    _pool: ProcessPoolExecutor | None = None

    @classmethod
    def not_applicable_to(cls, imports: ImportState) -> str | None:
        return CUSTODIAL_USERS if imports.custody == CUSTODIAL else None

    def not_applicable(self, user: VerifyUser) -> str | None:
        # a custodial user (imported under a new address) has no keyfile: the engine holds it
        custodial = user.target is not None and user.target != user.address
        return CUSTODIAL_USERS if custodial else None

    def check(self, users: Sequence[VerifyUser]) -> Mapping[str, Verdict]:
        reasons = self._decrypt([u.address for u in users])
        return {a: Verdict.passed() if r is None else Verdict.failed(*r)
                for a, r in reasons.items()}

    def _decrypt(self, addresses: list[str]) -> dict[str, Why]:
        keystore = str(self.ctx.data.keystore)
        password = self.ctx.settings.keystore_password
        workers = self.ctx.settings.workers or os.cpu_count() or 1
        if len(addresses) < self.INLINE_BELOW or workers == 1:
            return _decrypt_chunk(keystore, addresses, password)
        if self._pool is None:
            self._pool = ProcessPoolExecutor(workers)
        step = max(1, -(-len(addresses) // workers))
        futures = [self._pool.submit(_decrypt_chunk, keystore, addresses[i:i + step], password)
                   for i in range(0, len(addresses), step)]
        out: dict[str, Why] = {}
        for f in futures:
            out.update(f.result())
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
