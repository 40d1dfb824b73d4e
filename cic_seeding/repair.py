"""``cic-seed repair``: verify, redo exactly what each failing user is missing, verify again.

Every repair is a rerun of the part of the pipeline that made what is missing, for those users
only, through the same idempotent paths a resumed run takes:

* a keyfile that is missing, unreadable or holds another key (``local_key``) is deleted and the
  user is imported again by its chain importer, whose preparation writes it anew from the
  data directory's key material (the manifest seed and the user's index); the registration is
  found on the chain, not sent twice;
* a registration the chain lacks, or an import the state store does not call done
  (``accounts_index``, ``imported``, ``custodial_key``): the user is imported again by its
  importer (which asks the chain, or the engine, first);
* a metadata document that is missing or differs (``metadata*``): ``cic_meta`` puts the user's
  documents again (a put of the same document is a no-op on the server);
* a payment (``balance``, ``faucet``, ``gas``): the syncer checks the user's confirmed payments
  against the chain's logs and pays again only those the chain does not show;
* a USSD PIN (``ussd_pins``): ``ussd-pins`` writes the user's gateway account row again.

A keyfile that does not decrypt is rewritten only when the password has been proven by
another user's keyfile (else the password, not the keyfile, is what is wrong). Failures no
repair can reach are named: a check with no rerun, and, after the repair, a payment check that
still fails for a user whose every payment the sync found on the chain (it moved afterwards).
Killed at any point, a rerun of ``repair`` starts again from verify: each step is resumable.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cic_seeding.config import Settings
from cic_seeding.datadir import DataDir, dataset_settings, keyfile_path
from cic_seeding.importers.registry import get_importer, importer_names
from cic_seeding.log import plural
from cic_seeding.state import norm
from cic_seeding.verify import VerifyOptions, run_verify
from cic_seeding.verify.result import CheckResult, VerifyResult

log = logging.getLogger(__name__)

IMPORT, SYNC = "import", "sync"
#: check id -> (what is redone, by which importer: None for the importer the check ran for)
REDO: dict[str, tuple[str, str | None]] = {
    "local_key": (IMPORT, None),
    "accounts_index": (IMPORT, None),
    "imported": (IMPORT, None),
    "custodial_key": (IMPORT, None),
    "metadata": (IMPORT, "cic_meta"),
    "metadata_phone": (IMPORT, "cic_meta"),
    "metadata_custom": (IMPORT, "cic_meta"),
    "metadata_preferences": (IMPORT, "cic_meta"),
    "ussd_pins": (IMPORT, "ussd-pins"),
    "balance": (SYNC, None),
    "faucet": (SYNC, None),
    "gas": (SYNC, None),
}
#: The checks a sync repairs (a payment the chain does not show).
_PAYMENT_CHECKS = frozenset(cid for cid, (action, _) in REDO.items() if action == SYNC)
#: Order of the steps: chain importers first (new/ records the others read), then the
#: documents, the payments and the gateway rows.
_ORDER = {"cic_meta": 1, "ussd-pins": 3}
#: local_key reasons a rewrite repairs at once (the others only with a proven password).
_KEYFILE_GONE = ("there is no keyfile", "cannot be read as JSON", "holds the key of another")
_WRONG_PASSWORD = "does not decrypt"


@dataclass
class Step:
    """One rerun: ``action`` (import or sync) by ``importer`` for ``users`` (data-directory
    addresses for an import, target addresses for a sync), and the failures behind it."""

    action: str
    importer: str
    users: list[str] = field(default_factory=list)
    because: Counter[str] = field(default_factory=Counter)  # "check: reason" -> users
    keyfiles: list[str] = field(default_factory=list)  # keyfiles to delete first

    def add(self, address: str, why: str) -> None:
        if address not in self.users:
            self.users.append(address)
        self.because[why] += 1

    def line(self) -> str:
        verb = "pay again what the chain does not show" if self.action == SYNC else "import"
        reasons = "; ".join(f"{why} ({n})" for why, n in self.because.most_common(3))
        more = len(self.because) - 3
        rest = f"; and {more} more reasons" if more > 0 else ""
        files = f", rewriting {plural(len(self.keyfiles), 'keyfile')}" if self.keyfiles else ""
        return (f"{self.action} {self.importer}: {verb} for {plural(len(self.users), 'user')}"
                f"{files} -- {reasons}{rest}")


@dataclass
class RepairPlan:
    steps: list[Step] = field(default_factory=list)
    unrepairable: Counter[str] = field(default_factory=Counter)  # "check: reason" -> users

    @property
    def empty(self) -> bool:
        return not self.steps

    def lines(self) -> list[str]:
        out = [f"  {step.line()}" for step in self.steps]
        out += [f"  not repairable: {why} ({n})" for why, n in self.unrepairable.most_common()]
        return out


@dataclass
class RepairResult:
    before: VerifyResult
    plan: RepairPlan
    after: VerifyResult | None = None  # None: a dry run, or nothing to repair
    done: list[str] = field(default_factory=list)  # what each step did, one line each
    #: "check: reason" -> users still failing a payment check after a sync that found every
    #: payment of theirs on the chain: what differs changed after seeding; no rerun fixes it
    unrepaired: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        final = self.after or self.before
        return final.ok

    def render_text(self, dry_run: bool = False) -> str:
        before = self.before
        lines = [f"repair {before.directory}: verify found "
                 + (f"{plural(_failing(before), 'user')} failing"
                    if not before.ok else "nothing to repair")]
        if not self.plan.empty or self.plan.unrepairable:
            lines.append("plan" + (" (dry run: nothing done)" if dry_run else "") + ":")
            lines += self.plan.lines()
        lines += [f"  {line}" for line in self.done]
        if self.after is not None:
            lines.append("after repair: " + ("verify passes" if self.after.ok else
                                             f"{plural(_failing(self.after), 'user')} "
                                             "still failing"))
            lines += [f"  not repairable: {why} ({n}): every payment the sync makes is on the "
                      "chain, so what differs changed after seeding (a transfer away?)"
                      for why, n in self.unrepaired.most_common()]
            if not self.after.ok:
                lines.append(self.after.render_text())
        return "\n".join(lines)


def _failing(result: VerifyResult) -> int:
    return len({f.address for c in result.checks.values() for f in c.failures})


def _parts(result: VerifyResult) -> list[tuple[str, str, CheckResult]]:
    """``(importer, check id, result)`` of every check; ids of a run over several importers
    are prefixed ``IMPORTER:``."""
    out = []
    for cid, check in result.checks.items():
        importer, _, bare = cid.rpartition(":")
        out.append((importer or result.importer, bare, check))
    return out


def plan_repair(settings: Settings, result: VerifyResult) -> RepairPlan:
    """The reruns that redo what the failures of ``result`` say is missing."""
    plan = RepairPlan()
    steps: dict[tuple[str, str], Step] = {}
    proven = any(c.ok for _, cid, c in _parts(result) if cid == "local_key")
    data = DataDir(settings.data_dir)
    for importer, cid, check in _parts(result):
        for failure in check.failures:
            why = f"{cid}: {failure.reason}"
            redo = REDO.get(cid)
            if redo is None:
                plan.unrepairable[why] += 1
                continue
            action, by = redo
            if cid == "local_key" and not _rewritable(failure.reason, proven):
                plan.unrepairable[f"{why} (no keyfile decrypts with this password: is "
                                   "keystore_password right?)"] += 1
                continue
            name = by or importer
            if name not in importer_names():
                plan.unrepairable[f"{why} (importer {name!r} is not installed)"] += 1
                continue
            step = steps.setdefault((action, name), Step(action, name))
            target = failure.target or failure.address
            step.add(target if action == SYNC else failure.address, why)
            if cid == "local_key":
                path = keyfile_path(data.keystore, failure.address)
                if path.exists() and str(path) not in step.keyfiles:
                    step.keyfiles.append(str(path))
    plan.steps = sorted(steps.values(), key=lambda s: (
        s.action == SYNC, _ORDER.get(s.importer, 0)))
    return plan


def _rewritable(reason: str, proven: bool) -> bool:
    if any(p in reason for p in _KEYFILE_GONE):
        return True
    return _WRONG_PASSWORD in reason and proven


def repair(settings: Settings, options: VerifyOptions | None = None, *, dry_run: bool = False,
           timeout: float = 600.0, report: Callable[[str], None] | None = None
           ) -> RepairResult:
    """Verify ``settings.data_dir``; unless ``dry_run``, redo what the failing users lack and
    verify again. ``timeout``: seconds a payment step waits for the chain (a rerun resumes).
    ``report`` gets one line as each step starts."""
    settings = dataset_settings(settings)
    options = options or VerifyOptions()
    before = run_verify(settings, options)
    plan = plan_repair(settings, before)
    result = RepairResult(before, plan)
    if dry_run or plan.empty:
        return result
    paid: set[str] = set()  # targets a sync found (or made) every payment of on the chain
    for step in plan.steps:
        if report is not None:
            report(step.line())
        line, ok = _run(settings, step, timeout)
        result.done.append(line)
        if step.action == SYNC and ok:
            paid.update(norm(u) for u in step.users)
    result.after = run_verify(settings, options)
    for _, cid, check in _parts(result.after):
        if cid in _PAYMENT_CHECKS:
            for failure in check.failures:
                if norm(failure.target or failure.address) in paid:
                    result.unrepaired[f"{cid}: {failure.reason}"] += 1
    return result


def _run(settings: Settings, step: Step, timeout: float) -> tuple[str, bool]:
    """What the step did (one line), and whether it ended well."""
    if step.action == SYNC:
        return _pay(settings, step, timeout)
    for path in step.keyfiles:
        log.info("repair: removing keyfile %s (rewritten by the import)", path)
        Path(path).unlink(missing_ok=True)
    importer = get_importer(step.importer)(settings)
    try:
        reopened = importer.reopen(step.users, "reopened by repair: "
                                   + ", ".join(sorted({w.split(':')[0] for w in step.because})))
        out = importer.run()
    finally:
        importer.close()
    return (f"import {step.importer}: {reopened} reopened; " + out.render_text().split("\n")[0]
            .removeprefix(f"{step.importer}: ")), out.ok


def _pay(settings: Settings, step: Step, timeout: float) -> tuple[str, bool]:
    from cic_seeding.sync.run import run_sync
    from cic_seeding.sync.syncer import SyncOptions

    options = SyncOptions(confirmations=settings.confirmations, batch_size=settings.batch_size,
                          retries=settings.rpc_retries, timeout=timeout)
    out = run_sync(settings, step.importer, options, recheck=[norm(u) for u in step.users])
    return out.render_text().split("\n")[0], out.ok
