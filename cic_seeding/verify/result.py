"""What a verification run found: per-check counts and failures, and their renderings.

A result never decides the exit code; the CLI does (0 when :attr:`VerifyResult.ok`, else 1).

Every check ends in one of four states: *passed*, *failed*, *not applicable* (it concerns none
of the users: custodial keys of sovereign users) or *skipped* (it applies but could not run: its
service is not configured or did not answer, or ``--skip-*``). The text and HTML reports list
failures grouped by check and reason, with counts and a few example users; JSON keeps every
failing user with its detail and the exception behind it.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cic_seeding.errors import VerifyError
from cic_seeding.log import plural

#: Failing users listed per check (-vv) and in the JUnit rendering (JSON lists them all).
MAX_LISTED = 10
#: Example users named per group of failures.
EXAMPLES = 3
PASSED, FAILED, SKIPPED, NOT_APPLICABLE = "passed", "failed", "skipped", "not_applicable"
_COLOURS = {"ok": "32", "failed": "31", "skipped": "33"}


@dataclass(frozen=True)
class Failure:
    """One user failing one check: the data-directory address, why (a sentence shared by every
    user failing the same way), the target address, this user's particulars (``detail``) and
    the exception behind it (``error``: class and text), if any."""

    address: str
    reason: str
    target: str | None = None
    detail: str = ""
    error: str = ""

    def example(self, limit: int = 120) -> str:
        """``address: detail`` (or the address alone), the detail cut at ``limit``."""
        if not self.detail:
            return self.address
        detail = self.detail if len(self.detail) <= limit else self.detail[:limit - 3] + "..."
        return f"{self.address}: {detail}"

    def to_dict(self) -> dict[str, Any]:
        return {"address": self.address, "target": self.target, "reason": self.reason,
                "detail": self.detail, "error": self.error}


@dataclass(frozen=True)
class FailureGroup:
    """The users failing one check for one reason, in user order."""

    check: str
    reason: str
    failures: tuple[Failure, ...]

    @property
    def users(self) -> int:
        return len(self.failures)

    def sentence(self, examples: int = EXAMPLES) -> str:
        """``3 users -- reason (e.g. 0x..: detail; 0x..: detail)``: every user named when
        there are at most ``examples``."""
        shown = [f.example() for f in self.failures[:examples]]
        joiner = "; " if any(f.detail for f in self.failures[:examples]) else ", "
        named = ("e.g. " if self.users > examples else "") + joiner.join(shown)
        return f"{plural(self.users, 'user')} -- {self.reason} ({named})"


@dataclass
class CheckResult:
    """Counts of one check over every user; ``ok + failed + skipped + not_applicable == total``.

    ``skipped_because`` says why the runner skipped users (all of them, or those left when
    the check's service stopped answering); ``skip_deliberate`` is True when that was asked
    for (``--skip-*``). ``not_applicable_because`` is set when the check concerns none of the
    users (the kind of users they are). ``problems`` are failures of the run as a whole that
    no single user carries (e.g. the state store holds users the data directory does not);
    any makes the check fail.
    """

    id: str
    description: str
    groups: tuple[str, ...] = ()
    total: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    not_applicable: int = 0
    seconds: float = 0.0
    skipped_because: str | None = None
    skip_deliberate: bool = False
    not_applicable_because: str | None = None
    failures: list[Failure] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    passed: list[str] = field(default_factory=list, repr=False)  # addresses, for --results-dir
    skip_reasons: Counter[str] = field(default_factory=Counter, repr=False)  # per-user verdicts
    na_reasons: Counter[str] = field(default_factory=Counter, repr=False)  # per-user verdicts

    @property
    def passed_all(self) -> bool:
        return self.failed == 0 and not self.problems

    @property
    def state(self) -> str:
        """``passed``, ``failed``, ``not_applicable`` (it concerns nobody) or ``skipped``
        (nobody was checked)."""
        if not self.passed_all:
            return FAILED
        if self.not_applicable_because is not None and self.ok == self.skipped == 0:
            return NOT_APPLICABLE
        if self.ok == 0 and self.skipped and self.skip_reason is not None:
            return SKIPPED
        return PASSED

    @property
    def ran(self) -> bool:
        """Whether the check verified anyone (or found a run problem)."""
        return self.state in (PASSED, FAILED)

    @property
    def skip_reason(self) -> str | None:
        """Why users were skipped: the runner's reason, else the most common one the check
        gave (None: nobody was skipped, or only users -x left unchecked)."""
        if self.skipped_because is not None:
            return self.skipped_because
        return self.skip_reasons.most_common(1)[0][0] if self.skip_reasons else None

    def failure_groups(self) -> list[FailureGroup]:
        """The failures grouped by reason, the largest group first (ties: first seen)."""
        by_reason: dict[str, list[Failure]] = {}
        for f in self.failures:
            by_reason.setdefault(f.reason, []).append(f)
        groups = [FailureGroup(self.id, r, tuple(fs)) for r, fs in by_reason.items()]
        return sorted(groups, key=lambda g: -g.users)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "description": self.description, "groups": list(self.groups),
                "status": self.state, "total": self.total, "ok": self.ok,
                "failed": self.failed, "skipped": self.skipped,
                "not_applicable": self.not_applicable, "seconds": round(self.seconds, 3),
                "skipped_because": self.skip_reason, "skip_deliberate": self.skip_deliberate,
                "not_applicable_because": self.not_applicable_because,
                "not_applicable_reasons": dict(self.na_reasons),
                "problems": list(self.problems),
                "failure_groups": [{"reason": g.reason, "users": g.users,
                                    "examples": [f.address for f in g.failures[:EXAMPLES]]}
                                   for g in self.failure_groups()],
                "failures": [f.to_dict() for f in self.failures]}

    def line(self, colour: bool = False) -> str:
        """``id: ok/applicable`` plus failed, skipped and not-applicable counts."""
        state = self.state
        if state == SKIPPED:
            return f"{self.id}: {_paint('skipped', colour)} ({self.skip_reason})"
        if state == NOT_APPLICABLE:
            return f"{self.id}: not applicable ({self.not_applicable_because})"
        paint = "ok" if self.passed_all else "failed"
        applicable = self.total - self.not_applicable
        text = f"{self.id}: {_paint(f'{self.ok}/{applicable}', colour, paint)}"
        if self.failed:
            text += f", {_paint(f'{self.failed} failed', colour, 'failed')}"
        if self.problems:
            text += f", {_paint(plural(len(self.problems), 'run problem'), colour, 'failed')}"
        if self.skipped:
            text += f", {_paint(f'{self.skipped} skipped', colour, 'skipped')}"
        if self.not_applicable:
            text += f", {self.not_applicable} not applicable"
        return text


@dataclass
class VerifyResult:
    """A whole run: which users, which token, and one :class:`CheckResult` per check.

    With ``strict`` (``verify --strict``) a check that applies but was skipped fails the run.
    """

    directory: str
    importer: str
    users: int
    checks: dict[str, CheckResult] = field(default_factory=dict)
    token_symbol: str | None = None
    token_address: str | None = None
    token_decimals: int | None = None
    faucet_amount: int | None = None
    balance_adjust: str | None = None
    stopped_early: bool = False
    strict: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no user failed any check (and, with ``strict``, no check was skipped)."""
        return all(c.passed_all for c in self.checks.values()) and not self.strict_skipped()

    @property
    def failed(self) -> int:
        """Failures in all: users failing a check plus run problems."""
        return sum(c.failed + len(c.problems) for c in self.checks.values())

    def strict_skipped(self) -> list[CheckResult]:
        """Checks whose skips fail the run: with ``strict``, every check that skipped users
        for a reason other than ``--skip-*`` (users ``-x`` left unchecked do not count)."""
        if not self.strict or self.stopped_early:
            return []
        return [c for c in self.checks.values()
                if c.skipped and c.skip_reason is not None and not c.skip_deliberate]

    def not_applicable(self) -> dict[str, str]:
        """``{check id: the kind of users it does not concern}`` of checks concerning nobody."""
        return {cid: c.not_applicable_because or "" for cid, c in self.checks.items()
                if c.state == NOT_APPLICABLE}

    def skipped(self) -> dict[str, str]:
        """``{check id: why}`` of checks that skipped users (``-x`` aside)."""
        return {cid: c.skip_reason for cid, c in self.checks.items()
                if c.skipped and c.skip_reason is not None}

    def failure_groups(self) -> list[FailureGroup]:
        return [g for c in self.checks.values() for g in c.failure_groups()]

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "directory": self.directory, "importer": self.importer,
                "users": self.users, "token_symbol": self.token_symbol,
                "token_address": self.token_address, "token_decimals": self.token_decimals,
                "faucet_amount": self.faucet_amount, "balance_adjust": self.balance_adjust,
                "stopped_early": self.stopped_early, "strict": self.strict,
                "seconds": round(self.seconds, 3), "notes": list(self.notes),
                "not_applicable": self.not_applicable(), "skipped": self.skipped(),
                "strict_skipped": [c.id for c in self.strict_skipped()],
                "checks": {cid: c.to_dict() for cid, c in self.checks.items()}}

    def render_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def status_lines(self) -> list[str]:
        """``not applicable: ids (kind of users)`` and ``skipped: ids (why)``, checks with
        the same reason together (none: no line)."""
        lines = []
        for label, reasons in (("not applicable", self.not_applicable()),
                               ("skipped", self.skipped())):
            if reasons:
                lines.append(f"{label}: {_by_reason(reasons, self.checks)}")
        return lines

    def render_text(self, colour: bool = False, verbose: int = 0) -> str:
        """One line per check that ran, the not-applicable and skipped checks in a line each,
        the failures grouped by check and reason, notes, then a summary line. ``verbose`` 2
        (``-vv``) also lists failing users with the exception behind each failure."""
        lines = [c.line(colour) for c in self.checks.values() if c.ran]
        lines += self.status_lines()
        failing = [c for c in self.checks.values() if not c.passed_all]
        if failing:
            lines.append("failures:")
        for c in failing:
            lines += [f"  {c.id}: {p}" for p in c.problems]
            for group in c.failure_groups():
                lines.append(f"  {c.id}: {group.sentence()}")
                if verbose >= 2:
                    lines += _listed(group)
        lines += [f"note: {n}" for n in self.notes]
        lines.append(self.summary(colour))
        return "\n".join(lines) + "\n"

    def summary(self, colour: bool = False) -> str:
        token = f" of token {self.token_symbol}" if self.token_symbol else ""
        ran = [c for c in self.checks.values() if c.ran]
        head = (f"{plural(self.users, 'user')}{token}, {plural(len(ran), 'check')} "
                f"({self.importer} import)")
        if self.ok:
            return f"{head}: {_paint('all ok', colour, 'ok')}"
        parts = []
        bad = sum(1 for c in ran if not c.passed_all)
        if bad:
            parts.append(f"{plural(self.failed, 'failure')} in {plural(bad, 'check')}")
        strict = self.strict_skipped()
        if strict:
            parts.append(f"{plural(len(strict), 'check')} skipped under --strict "
                         f"({', '.join(c.id for c in strict)})")
        stop = "; stopped at the first failure (-x)" if self.stopped_early else ""
        return f"{head}: {_paint('FAILED', colour, 'failed')}: {'; '.join(parts)}{stop}"

    def render_junit(self) -> str:
        """JUnit XML: one testsuite, one testcase per check that concerns the users (those
        that do not are named in the property ``not_applicable``), skipped checks marked
        ``<skipped>`` (a ``<failure>`` with ``strict``), failures grouped by reason."""
        cases = [c for c in self.checks.values() if c.state != NOT_APPLICABLE]
        strict = {c.id for c in self.strict_skipped()}
        wholly_skipped = [c for c in cases if c.state == SKIPPED and c.id not in strict]
        suite = ET.Element("testsuite", {
            "name": "cic-seed verify", "tests": str(len(cases)),
            "failures": str(sum(1 for c in cases if not c.passed_all or c.id in strict)),
            "errors": "0", "skipped": str(len(wholly_skipped)),
            "time": f"{self.seconds:.3f}"})
        props = ET.SubElement(suite, "properties")
        for name in ("directory", "importer", "users", "token_symbol", "token_address",
                     "faucet_amount", "balance_adjust"):
            value = getattr(self, name)
            if value is not None:
                ET.SubElement(props, "property", {"name": name, "value": str(value)})
        if self.strict:
            ET.SubElement(props, "property", {"name": "strict", "value": "true"})
        na = self.not_applicable()
        if na:
            ET.SubElement(props, "property", {"name": "not_applicable",
                                              "value": _by_reason(na, self.checks)})
        for c in cases:
            _junit_case(suite, c, c.id in strict)
        ET.indent(suite)
        return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"

    def write_results_dir(self, directory: str | Path) -> list[Path]:
        """Write ``success_<id>`` and ``error_<id>`` per check that ran; returns the paths.

        One address per line; error lines carry the reason (and detail) after the address.
        """
        root = Path(directory)
        written = []
        try:
            root.mkdir(parents=True, exist_ok=True)
            for c in self.checks.values():
                if not c.ran:
                    continue
                ok_path, err_path = root / f"success_{c.id}", root / f"error_{c.id}"
                ok_path.write_text("".join(f"{a}\n" for a in c.passed), encoding="utf-8")
                err_path.write_text("".join(
                    f"{f.address} {f.reason}" + (f": {f.detail}" if f.detail else "") + "\n"
                    for f in c.failures), encoding="utf-8")
                written += [ok_path, err_path]
        except OSError as exc:
            raise VerifyError(f"cannot write results to {root}: {exc}",
                              hint="give a writable --results-dir") from None
        return written


def _by_reason(reasons: dict[str, str], checks: dict[str, CheckResult]) -> str:
    """``a, b (why); c (other)``: check ids with the same reason together, in id order; a
    check that concerns only some users says for how many."""
    grouped: dict[str, list[str]] = {}
    for cid, why in reasons.items():
        grouped.setdefault(why, []).append(cid)
    parts = []
    for why, ids in grouped.items():
        partial = [checks[i] for i in ids if checks[i].ran and checks[i].skipped]
        share = (f", {plural(partial[0].skipped, 'user')} of {partial[0].total}"
                 if len(ids) == 1 and partial else "")
        parts.append(f"{', '.join(ids)} ({why}{share})")
    return "; ".join(parts)


def _listed(group: FailureGroup) -> list[str]:
    """The users of ``group``, each with its detail and the exception behind it (-vv)."""
    out = []
    for f in group.failures[:MAX_LISTED]:
        line = f"    {f.address}"
        if f.target and f.target != f.address:
            line += f" (target {f.target})"
        if f.detail:
            line += f": {f.detail}"
        if f.error:
            line += f" [{f.error}]"
        out.append(line)
    if group.users > MAX_LISTED:
        out.append(f"    ... and {group.users - MAX_LISTED} more (all in --format json)")
    return out


def _junit_case(suite: ET.Element, c: CheckResult, strict: bool) -> None:
    case = ET.SubElement(suite, "testcase", {
        "classname": "cic_seeding.verify." + (c.groups[0] if c.groups else "check"),
        "name": c.id, "time": f"{c.seconds:.3f}"})
    if c.state == SKIPPED and not strict:
        ET.SubElement(case, "skipped", {"message": c.skip_reason or ""})
        return
    if not c.passed_all:
        message = (f"{c.failed} of {c.total} users failed {c.id} ({c.ok} ok, "
                   f"{c.skipped} skipped, {c.not_applicable} not applicable)")
        if c.problems:
            message += f"; {plural(len(c.problems), 'run problem')}"
        failure = ET.SubElement(case, "failure", {"type": "VerificationFailed",
                                                  "message": message})
        listed = list(c.problems)
        for group in c.failure_groups():
            listed.append(group.sentence())
            listed += _listed(group)
        failure.text = "\n".join(listed)
    elif strict:
        ET.SubElement(case, "failure", {
            "type": "SkippedUnderStrict",
            "message": f"{c.skipped} of {c.total} users skipped under --strict: "
                       f"{c.skip_reason}"})
    out = ET.SubElement(case, "system-out")
    out.text = (f"{c.description}\nok {c.ok}, failed {c.failed}, skipped {c.skipped}, "
                f"not applicable {c.not_applicable}, total {c.total}")


def _paint(text: str, colour: bool, state: str = "skipped") -> str:
    return f"\x1b[{_COLOURS[state]}m{text}\x1b[0m" if colour else text
