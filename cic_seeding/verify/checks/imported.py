"""The import check: the data directory and what the importer imported agree, user for user.

Every user of the data directory must be confirmed in the importer's state store, and the store
must hold no user the data directory lacks (a count mismatch either way is a failure).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cic_seeding.state import norm
from cic_seeding.verify.base import Check, Verdict, VerifyUser

#: How many addresses a run problem names before "...".
_NAMED = 3


class ImportedCheck(Check):
    id = "imported"
    description = ("the importer imported the user (confirmed in the state store), and the "
                   "store holds no user the data directory lacks")
    groups = ("import",)
    backends = ("state",)

    def check(self, users: Sequence[VerifyUser]) -> Mapping[str, Verdict]:
        importer = self.ctx.imports.importer if self.ctx.imports else "?"
        return {u.address: self._judge(u, importer) for u in users}

    @staticmethod
    def _judge(user: VerifyUser, importer: str) -> Verdict:
        status = user.import_status
        if status == "confirmed" and user.target is not None:
            return Verdict.passed()
        if status is None:
            return Verdict.failed(f"never imported: importer {importer!r} has no record of "
                                  f"the user (run `cic-seed import {importer}`)")
        if status == "failed":
            return Verdict.failed(f"the {importer} import failed", user.import_reason or "")
        if status == "submitted":
            return Verdict.failed(f"the {importer} import was submitted but never confirmed "
                                  f"(rerun `cic-seed import {importer}` to confirm it)")
        return Verdict.failed(f"not imported: the {importer} import has not reached the user "
                              f"(rerun `cic-seed import {importer}`)", status)

    def finish(self) -> list[str]:
        imports = self.ctx.imports
        if imports is None or not imports.users:
            return []
        ours = {norm(row.address) for row in self.ctx.data.users()}
        extra = sorted(a for a in imports.users if a not in ours)
        if not extra:
            return []
        named = ", ".join(extra[:_NAMED]) + (", ..." if len(extra) > _NAMED else "")
        return [f"the state store {imports.location} holds {len(extra)} users of importer "
                f"{imports.importer!r} that the data directory ({len(ours)} users) does not "
                f"({named}): was it filled from another data directory?"]
