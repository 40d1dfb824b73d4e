"""The HTML report: one self-contained file holding every check, the balances chart, failures."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from cic_seeding.cli.main import main
from cic_seeding.verify import VerifyOptions, VerifyResult, run_verify
from cic_seeding.verify.report import Histogram, render_html, write_html_report
from cic_seeding.verify.result import Failure
from tests.verify.fakes import World, make_world

CHAIN_CHECKS = ("accounts_index", "balance", "faucet", "gas")


class Parsed(HTMLParser):
    """What a reader of the report sees, by the report's data attributes; fails on bad nesting
    of the elements it tracks."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, str]] = {}
        self.failures: dict[str, list[list[str]]] = {}
        self.groups: dict[str, list[tuple[str, str]]] = {}
        self.bars: list[int] = []
        self.tags: list[str] = []
        self.text: list[str] = []
        self._row: list[str] | None = None
        self._stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        if tag in ("table", "tr", "svg", "td"):
            self._stack.append(tag)
        if tag == "tr" and "data-ok" in a:
            self.rows[a["data-check"]] = a
        elif tag == "tr" and a.get("class") == "failure":
            self._row = []
            self.failures.setdefault(a["data-check"], []).append(self._row)
        elif tag == "p" and a.get("class") == "group":
            self.groups.setdefault(a["data-check"], []).append((a["data-users"],
                                                                a["data-reason"]))
        elif tag == "rect" and "data-count" in a:  # the histogram's (not the timeline's)
            self.bars.append(int(a["data-count"]))
        elif tag == "td" and self._row is not None:
            self._row.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("table", "tr", "svg", "td"):
            assert self._stack.pop() == tag
        if tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._row is not None and self._row:
            self._row[-1] += data


def parse(text: str) -> Parsed:
    parsed = Parsed()
    parsed.feed(text)
    parsed.close()
    return parsed


def failing(tmp_path: Path, n: int = 30) -> tuple[World, VerifyResult]:
    world = make_world(tmp_path, n=n)
    for a in world.addresses[:4]:
        world.chain.registered[a] = False
    world.chain.balances[world.addresses[7]] += 1
    return world, run_verify(world.settings, VerifyOptions(include=CHAIN_CHECKS),
                             chain=world.chain)


def test_report_holds_every_check_its_counts_and_failures(tmp_path: Path) -> None:
    world, result = failing(tmp_path)
    path = write_html_report(result, tmp_path / "out" / "report.html")
    html = parse(path.read_text(encoding="utf-8"))
    assert set(html.rows) == set(result.checks)
    for cid, c in result.checks.items():
        row = html.rows[cid]
        assert (row["data-ok"], row["data-failed"], row["data-skipped"], row["data-total"]) == (
            str(c.ok), str(c.failed), str(c.skipped), str(c.total))
        assert row["data-result"] == ("pass" if c.passed_all else "fail")
    assert [r[0] for r in html.failures["accounts_index"]] == world.addresses[:4]
    (balance,) = html.failures["balance"]
    assert balance[0] == world.addresses[7] and balance[2].startswith("expected ")
    assert html.groups == {
        "accounts_index": [("4", "the AccountsIndex does not have the user")],
        "balance": [("1", "the token balance differs from the expected amount")]}
    assert set(html.failures) == {"accounts_index", "balance"}
    assert "FAILED" in "".join(html.text)


def test_report_is_self_contained(tmp_path: Path) -> None:
    _, result = failing(tmp_path)
    text = render_html(result, [1, 2, 3], decimals=0)
    html = parse(text)
    assert "script" not in html.tags and "link" not in html.tags and "img" not in html.tags
    assert "src=" not in text and "@import" not in text and "url(" not in text
    assert text.replace('xmlns="http://www.w3.org/2000/svg"', "").count("http") == 0


def test_chart_counts_every_opening_balance(tmp_path: Path) -> None:
    world, result = failing(tmp_path, n=60)
    html = parse(write_html_report(result, tmp_path / "r.html").read_text())
    assert sum(html.bars) == 60 and len(html.bars) > 1
    assert "opening balance (GFT)" in "".join(html.text)


@pytest.mark.parametrize("values,start,step,counts", [
    ([5], 5, 1, (1,)),
    ([0, 100], 0, 10, (1,) + (0,) * 9 + (1,)),
    ([3, 4, 4, 9], 3, 1, (1, 2, 0, 0, 0, 0, 1)),
    ([10**6, 2 * 10**6 - 1], 1_000_000, 50_000, (1,) + (0,) * 18 + (1,)),
])
def test_histogram_bins(values: list[int], start: int, step: int,
                        counts: tuple[int, ...]) -> None:
    assert Histogram.of(values) == Histogram(start, step, counts)


def test_reasons_are_escaped_and_long_lists_cut(tmp_path: Path) -> None:
    world, result = failing(tmp_path)
    check = result.checks["gas"]
    check.failures = [Failure(f"0x{i:040x}", "<script>alert(1)</script>") for i in range(12)]
    check.failed = 12
    html = parse(render_html(result, max_listed=5))
    assert "script" not in html.tags
    assert len(html.failures["gas"]) == 5
    assert "... and 7 more" in "".join(html.text)
    assert "no opening balances" in "".join(html.text)


def test_cli_writes_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    from cic_seeding.cli import verify_cmd

    monkeypatch.chdir(tmp_path)
    world = make_world(tmp_path, n=5)
    world.chain.native[world.addresses[3]] = 0
    monkeypatch.setattr(verify_cmd, "CONNECT", lambda settings: world.chain)
    report = tmp_path / "report.html"
    code = main(["verify", world.settings.data_dir, "--exclude", "local_key", "--report",
                 str(report)])
    assert code == 1
    assert f"HTML report: {report}" in capsys.readouterr().err
    html = parse(report.read_text())
    assert html.rows["gas"]["data-failed"] == "1"
    assert [r[0] for r in html.failures["gas"]] == [world.addresses[3]]
