"""The custodial key check: the custodial engine holds the key of the user's target address.

Asked through the engine's API (``cic_custodial.account.have``, one request per batch). It
does not apply to sovereign users (an importer whose users hold their own keys, or a user
whose target is its own generated address). The check needs a custodial engine
(``custodial_broker_url``, or a devnet started with ``--custodial``); without one it is
skipped unless asked for by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cic_seeding.config import Settings
from cic_seeding.custodial import TASK_HAVE, CustodialClient, engine_client, unconfigured
from cic_seeding.errors import VerifyError
from cic_seeding.verify.base import (
    SOVEREIGN,
    SOVEREIGN_USERS,
    Check,
    ImportState,
    Verdict,
    VerifyUser,
)

#: Seconds to wait for the engine's answer about one batch (one quick database read).
ASK_TIMEOUT = 30.0


class CustodialKeyCheck(Check):
    id = "custodial_key"
    description = "the custodial engine holds the key of the user's address (asked via its API)"
    groups = ("custodial",)
    backends = ("custodial",)
    needs_target = True

    _client: CustodialClient | None = None

    @classmethod
    def unavailable(cls, settings: Settings) -> str | None:
        return unconfigured(settings)

    @classmethod
    def not_applicable_to(cls, imports: ImportState) -> str | None:
        return SOVEREIGN_USERS if imports.custody == SOVEREIGN else None

    def not_applicable(self, user: VerifyUser) -> str | None:
        return SOVEREIGN_USERS if user.target == user.address else None

    def check(self, users: Sequence[VerifyUser]) -> Mapping[str, Verdict]:
        out: dict[str, Verdict] = {}
        custodial = [u for u in users if u.target is not None]
        if not custodial:
            return out
        held = self._ask([u.target for u in custodial if u.target is not None])
        for u in custodial:
            assert u.target is not None  # the base class filtered the others
            if u.target not in held:
                raise VerifyError(f"the custodial engine gave no answer for {u.target} "
                                  f"(check {self.id!r})")
            out[u.address] = Verdict.passed() if held[u.target] else Verdict.failed(
                "the custodial engine holds no key for the user's address", u.target)
        return out

    def _ask(self, targets: list[str]) -> dict[str, bool]:
        if self._client is None:
            self._client = engine_client(self.ctx.settings)
        answer = self._client.call(TASK_HAVE, {"addresses": targets},
                                   timeout=min(self.ctx.settings.custodial_timeout, ASK_TIMEOUT),
                                   what=f"the keys of {len(targets)} addresses")
        have = answer.get("have")
        if not isinstance(have, dict):
            raise VerifyError(f"the custodial engine answered {TASK_HAVE} without 'have': "
                              f"{str(answer)[:200]}")
        return {str(a).lower(): bool(v) for a, v in have.items()}

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
