"""The HTML report: one self-contained file (inline CSS and SVG, no scripts, no network).

It shows the run's summary, a table of every check with its counts (not-applicable and skipped
checks said so, with why), the run's timeline (each stage recorded in the data directory's
``timeline.jsonl``: when, how long, users per second), a histogram of the data directory's
opening balances, and the failures of each check grouped by reason, with counts and the failing
users::

    from cic_seeding.verify.report import write_html_report
    write_html_report(result, "report.html")  # opening balances read from result.directory
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from cic_seeding.datadir import DataDir, StageTiming, read_timeline
from cic_seeding.errors import CicSeedError, VerifyError
from cic_seeding.log import plural
from cic_seeding.verify.result import (
    FAILED,
    NOT_APPLICABLE,
    SKIPPED,
    CheckResult,
    VerifyResult,
)

#: Failing users listed per check; the rest are counted (JSON and --results-dir list all).
MAX_LISTED = 200
#: Bars the histogram aims for.
BINS = 20
#: Stages of the timeline shown (the latest; the file keeps them all).
MAX_STAGES = 40

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;
max-width:1100px;padding:0 1rem;color:#1d232a;background:#fff}
h1{font-size:1.5rem;margin:0 0 .25rem}h2{font-size:1.15rem;margin:2rem 0 .5rem}
h3{font-size:1rem;margin:1.25rem 0 .4rem;font-family:ui-monospace,monospace}
table{border-collapse:collapse;width:100%;margin:.25rem 0}
th,td{border-bottom:1px solid #e3e6ea;padding:.35rem .55rem;text-align:left;vertical-align:top}
th{background:#f5f7f9;font-weight:600}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.9em}
.badge{display:inline-block;padding:.05rem .5rem;border-radius:.7rem;font-size:.8rem;
font-weight:600;color:#fff}.pass{background:#1f883d}.fail{background:#cf222e}
.skip{background:#9a6700}.na{background:#6e7781}.verdict{font-size:1.05rem;margin:.25rem 0 1rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;margin:0}
dt{color:#57606a}dd{margin:0}.note{color:#57606a}.more{color:#57606a;font-style:italic}
table.failures{table-layout:fixed}table.failures td.mono{word-break:break-all}
p.group{margin:.6rem 0 .2rem}.error{color:#57606a;font-size:.85em}
.bar{fill:#0969da}.bar.failed{fill:#cf222e}.axis{stroke:#57606a;stroke-width:1}.grid{stroke:#e3e6ea;stroke-width:1}
svg text{font:11px system-ui,sans-serif;fill:#1d232a}
"""


@dataclass(frozen=True)
class Histogram:
    """Counts of ``values`` in bins ``[start + i*step, start + (i+1)*step)``, i < len(counts)."""

    start: int
    step: int
    counts: tuple[int, ...]

    @classmethod
    def of(cls, values: Sequence[int], bins: int = BINS) -> Histogram:
        if not values:
            return cls(0, 1, ())
        low, high = min(values), max(values)
        step = _nice_step(-(-(high - low + 1) // bins))
        start = low - low % step
        counts = [0] * ((high - start) // step + 1)
        for v in values:
            counts[(v - start) // step] += 1
        return cls(start, step, tuple(counts))


def _nice_step(raw: int) -> int:
    """The smallest of 1, 2, 5 times a power of ten that is at least ``raw``."""
    power = 1
    while True:
        for m in (1, 2, 5):
            if m * power >= raw:
                return m * power
        power *= 10


def render_html(result: VerifyResult, opening: Sequence[int] = (), *, decimals: int = 0,
                symbol: str | None = None, max_listed: int = MAX_LISTED,
                timeline: Sequence[StageTiming] = ()) -> str:
    """The report of ``result`` as one HTML document.

    ``opening`` are the data directory's opening balances in the smallest unit of a dataset
    with ``decimals`` decimals; ``symbol`` labels amounts (default: the result's token);
    ``timeline`` the stages run on the data directory, in the order they finished.
    """
    symbol = symbol or result.token_symbol or "tokens"
    verdict = "OK" if result.ok else "FAILED"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>cic-seed verify: {verdict}</title><style>{_CSS}</style></head><body>",
        "<h1>cic-seed verify</h1>",
        f'<p class="verdict">{_badge("pass" if result.ok else "fail", verdict)} '
        f"{_e(result.summary())}</p>",
        _facts(result),
        *[f'<p class="status">{_e(line)}</p>' for line in result.status_lines()],
        *[f'<p class="note">note: {_e(n)}</p>' for n in result.notes],
        "<h2>Checks</h2>", _checks_table(result),
        "<h2>Timeline</h2>", _timeline(timeline),
        "<h2>Opening balances</h2>", _balances(opening, decimals, symbol),
        "<h2>Failures</h2>", _failures(result, max_listed),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_html_report(result: VerifyResult, path: str | Path, *,
                      data: DataDir | None = None) -> Path:
    """Write :func:`render_html` of ``result`` to ``path``, with the opening balances and the
    timeline of ``data`` (default: the result's data directory); VerifyError if it cannot be
    written."""
    data = data or DataDir(result.directory)
    timeline = read_timeline(data.root)
    try:
        opening = list(data.read_balances().values.values())  # bad rows are left out
        decimals = data.manifest().decimals
    except (OSError, ValueError, CicSeedError):
        opening, decimals = [], result.token_decimals or 0
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render_html(result, opening, decimals=decimals, timeline=timeline),
                          encoding="utf-8")
    except OSError as exc:
        raise VerifyError(f"cannot write the HTML report to {target}: {exc}",
                          hint="give a writable --report FILE") from None
    return target


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _badge(kind: str, text: str) -> str:
    return f'<span class="badge {kind}">{_e(text)}</span>'


def _amount(value: int | Decimal, decimals: int) -> str:
    scaled = Decimal(value).scaleb(-decimals)
    text = f"{scaled:,.{decimals}f}" if decimals else f"{scaled:,.0f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _facts(result: VerifyResult) -> str:
    decimals = result.token_decimals or 0
    rows = [("data directory", result.directory), ("importer", result.importer),
            ("users", result.users), ("token", result.token_symbol),
            ("token address", result.token_address), ("token decimals", result.token_decimals),
            ("faucet amount", None if result.faucet_amount is None
             else f"{_amount(result.faucet_amount, decimals)} {result.token_symbol or ''}"),
            ("--balance-adjust", result.balance_adjust),
            ("duration", f"{result.seconds:.2f} s"),
            ("stopped early (-x)", "yes" if result.stopped_early else None),
            ("--strict", "yes" if result.strict else None)]
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows if v is not None)
    return f"<dl>{items}</dl>"


def _state(c: CheckResult, strict: bool) -> tuple[str, str]:
    state = c.state
    if state == FAILED or strict:
        return "fail", "fail"
    if state == NOT_APPLICABLE:
        return "na", "n/a"
    if state == SKIPPED:
        return "skip", "skipped"
    return "pass", "pass"


def _checks_table(result: VerifyResult) -> str:
    head = ("<tr><th>check</th><th>result</th><th class=n>ok</th><th class=n>failed</th>"
            "<th class=n>skipped</th><th class=n>n/a</th><th class=n>total</th>"
            "<th class=n>seconds</th><th>what it verifies</th></tr>")
    strict = {c.id for c in result.strict_skipped()}
    rows = []
    for c in result.checks.values():
        kind, label = _state(c, c.id in strict)
        why = ""
        if c.state == NOT_APPLICABLE:
            why = f" (not applicable: {_e(c.not_applicable_because)})"
        elif c.skip_reason is not None and c.skipped:
            why = f" (skipped: {_e(c.skip_reason)})"
        if c.id in strict:
            why += " under --strict"
        problems = f"; {plural(len(c.problems), 'run problem')}" if c.problems else ""
        rows.append(
            f'<tr id="check-{_e(c.id)}" data-check="{_e(c.id)}" data-result="{label}" '
            f'data-ok="{c.ok}" data-failed="{c.failed}" data-skipped="{c.skipped}" '
            f'data-not-applicable="{c.not_applicable}" data-total="{c.total}">'
            f"<td><code>{_e(c.id)}</code></td>"
            f"<td>{_badge(kind, label)}{why}{problems}</td><td class=n>{c.ok}</td>"
            f"<td class=n>{c.failed}</td><td class=n>{c.skipped}</td>"
            f"<td class=n>{c.not_applicable}</td><td class=n>{c.total}</td>"
            f"<td class=n>{c.seconds:.2f}</td><td>{_e(c.description)}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _balances(opening: Sequence[int], decimals: int, symbol: str) -> str:
    if not opening:
        return '<p class="note">no opening balances (balances.csv is missing or empty)</p>'
    ordered = sorted(opening)
    n = len(ordered)
    median = Decimal(ordered[n // 2]) if n % 2 else Decimal(ordered[n // 2 - 1]
                                                            + ordered[n // 2]) / 2
    stats = [("users", f"{n:,}"), ("total", _amount(sum(ordered), decimals)),
             ("min", _amount(ordered[0], decimals)), ("median", _amount(median, decimals)),
             ("mean", _amount(Decimal(sum(ordered)) / n, decimals)),
             ("max", _amount(ordered[-1], decimals))]
    table = ("<table><tr>" + "".join(f"<th class=n>{_e(k)}</th>" for k, _ in stats)
             + "</tr><tr>" + "".join(f"<td class=n>{_e(v)}</td>" for _, v in stats)
             + "</tr></table>")
    return histogram_svg(Histogram.of(ordered), decimals, symbol) + table


def histogram_svg(hist: Histogram, decimals: int, symbol: str) -> str:
    """An inline SVG bar chart of ``hist`` (amounts shown in whole tokens)."""
    width, height, left, right, top, bottom = 760, 300, 60, 16, 14, 52
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(hist.counts, default=0) or 1
    y_step = _nice_step(-(-peak // 4))
    y_max = -(-peak // y_step) * y_step
    bar_w = plot_w / max(1, len(hist.counts))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" id="balance-histogram" '
           f'aria-label="histogram of opening balances"><title>Opening balance distribution'
           f" ({_e(symbol)})</title>"]
    for tick in range(0, y_max + 1, y_step):
        y = top + plot_h - plot_h * tick / y_max
        out.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" '
                   f'y2="{y:.1f}"/><text x="{left - 6}" y="{y + 4:.1f}" '
                   f'text-anchor="end">{tick:,}</text>')
    for i, count in enumerate(hist.counts):
        low = hist.start + i * hist.step
        h = plot_h * count / y_max
        label = (f"{_amount(low, decimals)} to {_amount(low + hist.step, decimals)} {symbol}: "
                 f"{count} users")
        out.append(f'<rect class="bar" x="{left + i * bar_w + 1:.1f}" '
                   f'y="{top + plot_h - h:.1f}" width="{max(bar_w - 2, 1):.1f}" '
                   f'height="{h:.1f}" data-count="{count}"><title>{_e(label)}</title></rect>')
    every = max(1, -(-len(hist.counts) // 8))
    for i in range(0, len(hist.counts) + 1, every):
        x = left + i * bar_w
        out.append(f'<line class="axis" x1="{x:.1f}" x2="{x:.1f}" y1="{top + plot_h}" '
                   f'y2="{top + plot_h + 4}"/><text x="{x:.1f}" y="{top + plot_h + 17}" '
                   f'text-anchor="middle">'
                   f"{_e(_amount(hist.start + i * hist.step, decimals))}</text>")
    out.append(f'<line class="axis" x1="{left}" x2="{width - right}" y1="{top + plot_h}" '
               f'y2="{top + plot_h}"/><line class="axis" x1="{left}" x2="{left}" y1="{top}" '
               f'y2="{top + plot_h}"/>')
    out.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 10}" text-anchor="middle">'
               f"opening balance ({_e(symbol)})</text><text x=\"14\" "
               f'y="{top + plot_h / 2:.1f}" text-anchor="middle" '
               f'transform="rotate(-90 14 {top + plot_h / 2:.1f})">users</text></svg>')
    return "".join(out)


def _timeline(stages: Sequence[StageTiming]) -> str:
    """The stages as bars of their rate (units per second) and a table: when each began, how
    long it took, how many it did of how many."""
    if not stages:
        return ('<p class="note">no stage recorded: import, sync, traffic and verify each append '
                "theirs to timeline.jsonl in the data directory</p>")
    shown = list(stages[-MAX_STAGES:])
    first = len(stages) - len(shown)
    rows = []
    for n, t in enumerate(shown, first + 1):
        rate = t.rate
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t.started))
        rows.append(
            f'<tr class="stage" data-stage="{_e(t.stage)}" data-done="{t.done}" '
            f'data-total="{_e("" if t.total is None else t.total)}" '
            f'data-seconds="{t.seconds:.3f}" data-rate="{"" if rate is None else f"{rate:.3f}"}" '
            f'data-result="{"ok" if t.ok else "failed"}"><td class=n>{n}</td>'
            f"<td><code>{_e(t.stage)}</code></td>"
            f"<td>{when} UTC</td><td class=n>{t.seconds:.2f}</td><td class=n>{t.done:,}</td>"
            f"<td class=n>{'' if t.total is None else f'{t.total:,}'}</td>"
            f"<td class=n>{_per_second(t)}</td>"
            f"<td>{_badge('pass', 'ok') if t.ok else _badge('fail', 'failed')}</td></tr>")
    head = ("<tr><th class=n>#</th><th>stage</th><th>started</th><th class=n>seconds</th>"
            "<th class=n>done this run</th><th class=n>of</th><th class=n>per second</th>"
            "<th>result</th></tr>")
    more = (f'<p class="more">the {first} earlier stages are in timeline.jsonl</p>'
            if first else "")
    return timeline_svg(shown) + f"<table>{head}{''.join(rows)}</table>" + more


def _per_second(t: StageTiming) -> str:
    rate = t.rate
    if rate is None:
        return "-"
    return f"{rate:,.1f} {_e(t.unit)}/s" if rate < 100 else f"{rate:,.0f} {_e(t.unit)}/s"


def timeline_svg(stages: Sequence[StageTiming]) -> str:
    """An inline SVG of horizontal bars: each stage's rate (units per second), labelled."""
    row, top, left, label_w, right = 22, 8, 10, 150, 250
    width = 760
    plot_w = width - left - label_w - right
    height = top * 2 + row * len(stages)
    peak = max((t.rate or 0.0 for t in stages), default=0.0) or 1.0
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" id="timeline" '
           'aria-label="units per second of each stage"><title>Timeline: units per second of '
           "each stage</title>"]
    x0 = left + label_w
    for i, t in enumerate(stages):
        y = top + i * row
        rate = t.rate
        w = plot_w * (rate or 0.0) / peak
        text = (f"{_per_second(t)}: {t.done:,} in {t.seconds:.1f} s" if rate is not None
                else f"{t.done:,} {_e(t.unit)} in {t.seconds:.1f} s")
        out.append(f'<text x="{x0 - 6}" y="{y + 15}" text-anchor="end">{_e(t.stage)}</text>')
        if w > 0:
            out.append(f'<rect class="bar{"" if t.ok else " failed"}" x="{x0}" y="{y + 3}" '
                       f'width="{max(w, 1):.1f}" height="{row - 6}" data-stage="{_e(t.stage)}">'
                       f"<title>{_e(t.stage)}: {text}</title></rect>")
        out.append(f'<text x="{x0 + w + 6:.1f}" y="{y + 15}">{text}</text>')
    out.append(f'<line class="axis" x1="{x0}" x2="{x0}" y1="{top}" y2="{height - top}"/></svg>')
    return "".join(out)


def _target(address: str, target: str | None) -> str:
    if target is None:
        return "not imported"
    return "same address" if target.lower() == address.lower() else _e(target)


def _failures(result: VerifyResult, max_listed: int) -> str:
    """Per failing check: its run problems, then its failures grouped by reason (the
    sentence of the text report), each group with its users, ``max_listed`` per check."""
    failing = [c for c in result.checks.values() if not c.passed_all]
    if not failing:
        return '<p class="note">none: every user passed every check that ran</p>'
    out = []
    for c in failing:
        out.append(f'<h3 id="failures-{_e(c.id)}">{_e(c.id)}: {c.failed} of {c.total} users '
                   "failed</h3>")
        out += [f'<p class="problem" data-check="{_e(c.id)}">run problem: {_e(p)}</p>'
                for p in c.problems]
        left = max_listed
        for group in c.failure_groups():
            out.append(f'<p class="group" data-check="{_e(c.id)}" data-users="{group.users}" '
                       f'data-reason="{_e(group.reason)}"><b>{_e(group.sentence())}</b></p>')
            shown = group.failures[:max(left, 0)]
            left -= len(shown)
            if not shown:
                continue
            rows = "".join(
                f'<tr class="failure" data-check="{_e(c.id)}"><td class="mono">{_e(f.address)}'
                f'</td><td class="mono">{_target(f.address, f.target)}</td><td>{_e(f.detail)}'
                + (f' <span class="error">{_e(f.error)}</span>' if f.error else "")
                + "</td></tr>" for f in shown)
            out.append('<table class="failures"><colgroup><col style="width:27%">'
                       '<col style="width:27%"><col></colgroup><tr><th>address</th>'
                       f"<th>on the target chain</th><th>detail</th></tr>{rows}</table>")
        if len(c.failures) > max_listed:
            out.append(f'<p class="more">... and {len(c.failures) - max_listed} more (all are '
                       "in --format json and --results-dir)</p>")
    return "\n".join(out)
