"""What a verification run found: per-check counts and failures, and their renderings.

A result never decides the exit code; the CLI does (0 when :attr:`VerifyResult.ok`, else 1).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cic_seeding.errors import VerifyError

#: Failures listed per check in the text and JUnit renderings (JSON lists them all).
MAX_LISTED = 10
_COLOURS = {"ok": "32", "failed": "31", "skipped": "33"}


@dataclass(frozen=True)
class Failure:
    """One user failing one check: the data-directory address, why, and the target address."""

    address: str
    reason: str
    target: str | None = None


@dataclass
class CheckResult:
    """Counts of one check over every user; ``ok + failed + skipped == total``.

    ``skipped_because`` is set when the whole check was skipped (e.g. ``--skip-custodial``).
    ``problems`` are failures of the run as a whole that no single user carries (e.g. the
    state store holds users the data directory does not); any makes the check fail.
    """

    id: str
    description: str
    groups: tuple[str, ...] = ()
    total: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    skipped_because: str | None = None
    failures: list[Failure] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    passed: list[str] = field(default_factory=list, repr=False)  # addresses, for --results-dir

    @property
    def passed_all(self) -> bool:
        return self.failed == 0 and not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "description": self.description, "groups": list(self.groups),
                "total": self.total, "ok": self.ok, "failed": self.failed,
                "skipped": self.skipped, "seconds": round(self.seconds, 3),
                "skipped_because": self.skipped_because, "problems": list(self.problems),
                "failures": [{"address": f.address, "target": f.target, "reason": f.reason}
                             for f in self.failures]}

    def line(self, colour: bool = False) -> str:
        """``id: ok/total`` plus failed and skipped counts, for the text rendering."""
        if self.skipped_because is not None:
            return f"{self.id}: {_paint('skipped', colour)} ({self.skipped_because})"
        state = "ok" if self.passed_all else "failed"
        text = f"{self.id}: {_paint(f'{self.ok}/{self.total}', colour, state)}"
        if self.failed:
            text += f", {_paint(f'{self.failed} failed', colour, 'failed')}"
        if self.problems:
            text += f", {_paint(_run_problems(len(self.problems)), colour, 'failed')}"
        if self.skipped:
            text += f", {_paint(f'{self.skipped} skipped', colour, 'skipped')}"
        return text


@dataclass
class VerifyResult:
    """A whole run: which users, which token, and one :class:`CheckResult` per check."""

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
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no user failed any check."""
        return all(c.passed_all for c in self.checks.values())

    @property
    def failed(self) -> int:
        """Failures in all: users failing a check plus run problems."""
        return sum(c.failed + len(c.problems) for c in self.checks.values())

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "directory": self.directory, "importer": self.importer,
                "users": self.users, "token_symbol": self.token_symbol,
                "token_address": self.token_address, "token_decimals": self.token_decimals,
                "faucet_amount": self.faucet_amount, "balance_adjust": self.balance_adjust,
                "stopped_early": self.stopped_early, "seconds": round(self.seconds, 3),
                "notes": list(self.notes),
                "checks": {cid: c.to_dict() for cid, c in self.checks.items()}}

    def render_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def render_text(self, colour: bool = False) -> str:
        """One line per check, the first failures of each, notes, then a summary line."""
        lines = [c.line(colour) for c in self.checks.values()]
        for c in self.checks.values():
            lines += [f"  {c.id}: {p}" for p in c.problems]
            lines += [f"  {c.id}: {f.address}: {f.reason}" for f in c.failures[:MAX_LISTED]]
            if c.failed > MAX_LISTED:
                lines.append(f"  {c.id}: ... and {c.failed - MAX_LISTED} more")
        lines += [f"note: {n}" for n in self.notes]
        lines.append(self.summary(colour))
        return "\n".join(lines) + "\n"

    def summary(self, colour: bool = False) -> str:
        token = f" of token {self.token_symbol}" if self.token_symbol else ""
        ran = [c for c in self.checks.values() if c.skipped_because is None]
        head = f"{self.users} users{token}, {len(ran)} checks ({self.importer} import)"
        if self.ok:
            return f"{head}: {_paint('all ok', colour, 'ok')}"
        bad = sum(1 for c in ran if not c.passed_all)
        stop = "; stopped at the first failure (-x)" if self.stopped_early else ""
        return (f"{head}: {_paint('FAILED', colour, 'failed')}: {self.failed} failures in "
                f"{bad} checks{stop}")

    def render_junit(self) -> str:
        """JUnit XML: one testsuite, one testcase per check, counts and first failures."""
        suite = ET.Element("testsuite", {
            "name": "cic-seed verify", "tests": str(len(self.checks)),
            "failures": str(sum(1 for c in self.checks.values() if not c.passed_all)),
            "errors": "0", "skipped": str(sum(1 for c in self.checks.values()
                                              if c.skipped_because is not None)),
            "time": f"{self.seconds:.3f}"})
        props = ET.SubElement(suite, "properties")
        for name in ("directory", "importer", "users", "token_symbol", "token_address",
                     "faucet_amount", "balance_adjust"):
            value = getattr(self, name)
            if value is not None:
                ET.SubElement(props, "property", {"name": name, "value": str(value)})
        for c in self.checks.values():
            _junit_case(suite, c)
        ET.indent(suite)
        return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"

    def write_results_dir(self, directory: str | Path) -> list[Path]:
        """Write ``success_<id>`` and ``error_<id>`` per check that ran; returns the paths.

        One address per line; error lines carry the reason after the address.
        """
        root = Path(directory)
        written = []
        try:
            root.mkdir(parents=True, exist_ok=True)
            for c in self.checks.values():
                if c.skipped_because is not None:
                    continue
                ok_path, err_path = root / f"success_{c.id}", root / f"error_{c.id}"
                ok_path.write_text("".join(f"{a}\n" for a in c.passed), encoding="utf-8")
                err_path.write_text("".join(f"{f.address} {f.reason}\n" for f in c.failures),
                                    encoding="utf-8")
                written += [ok_path, err_path]
        except OSError as exc:
            raise VerifyError(f"cannot write results to {root}: {exc}",
                              hint="give a writable --results-dir") from None
        return written


def _junit_case(suite: ET.Element, c: CheckResult) -> None:
    case = ET.SubElement(suite, "testcase", {
        "classname": "cic_seeding.verify." + (c.groups[0] if c.groups else "check"),
        "name": c.id, "time": f"{c.seconds:.3f}"})
    if c.skipped_because is not None:
        ET.SubElement(case, "skipped", {"message": c.skipped_because})
        return
    if not c.passed_all:
        message = f"{c.failed} of {c.total} users failed {c.id} ({c.ok} ok, {c.skipped} skipped)"
        if c.problems:
            message += f"; {_run_problems(len(c.problems))}"
        failure = ET.SubElement(case, "failure", {"type": "VerificationFailed",
                                                  "message": message})
        listed = list(c.problems) + [f"{f.address}: {f.reason}"
                                     for f in c.failures[:MAX_LISTED]]
        if c.failed > MAX_LISTED:
            listed.append(f"... and {c.failed - MAX_LISTED} more")
        failure.text = "\n".join(listed)
    out = ET.SubElement(case, "system-out")
    out.text = f"{c.description}\nok {c.ok}, failed {c.failed}, skipped {c.skipped}, " \
               f"total {c.total}"


def _run_problems(n: int) -> str:
    return f"{n} run problem{'' if n == 1 else 's'}"


def _paint(text: str, colour: bool, state: str = "skipped") -> str:
    return f"\x1b[{_COLOURS[state]}m{text}\x1b[0m" if colour else text
