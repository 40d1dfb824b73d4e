"""The HTML report's timeline: every stage the data directory's timeline.jsonl holds, as a bar
of its users per second and a table row; ``cic-seed verify`` records its own stage first."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from cic_seeding.cli.main import main
from cic_seeding.datadir import StageTiming, append_stage, read_timeline
from cic_seeding.verify import VerifyOptions, run_verify
from cic_seeding.verify.report import MAX_STAGES, render_html, write_html_report
from tests.verify.fakes import make_world


class Timeline(HTMLParser):
    """The timeline's table rows and bars, by their data attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []
        self.bars: list[dict[str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "tr" and a.get("class") == "stage":
            self.rows.append(a)
        elif tag == "rect" and "data-stage" in a:
            self.bars.append(a)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(text: str) -> Timeline:
    parsed = Timeline()
    parsed.feed(text)
    return parsed


STAGES = [StageTiming("import eth", 1.7e9, 4.0, 300, 300),
          StageTiming("sync eth", 1.7e9 + 5, 3.0, 300, 300),
          StageTiming("traffic", 1.7e9 + 9, 2.0, 50, 60, unit="transfers", ok=False),
          StageTiming("verify", 1.7e9 + 12, 0.0, 0, 300)]


def test_the_report_shows_each_stage_with_its_users_per_second(tmp_path: Path) -> None:
    world = make_world(tmp_path, n=5)
    for timing in STAGES:
        append_stage(world.settings.data_dir, timing)
    result = run_verify(world.settings, VerifyOptions(include=("balance",)), chain=world.chain)
    html = parse(write_html_report(result, tmp_path / "r.html").read_text())
    assert [(r["data-stage"], r["data-done"], r["data-total"], r["data-rate"],
             r["data-result"]) for r in html.rows] == [
        ("import eth", "300", "300", "75.000", "ok"), ("sync eth", "300", "300", "100.000", "ok"),
        ("traffic", "50", "60", "25.000", "failed"), ("verify", "0", "300", "", "ok")]
    # one bar per stage that did something, as long as its rate (the fastest is the longest)
    widths = {b["data-stage"]: float(b["width"]) for b in html.bars}
    assert set(widths) == {"import eth", "sync eth", "traffic"}
    assert widths["sync eth"] > widths["import eth"] > widths["traffic"]
    assert widths["import eth"] == pytest.approx(widths["sync eth"] * 0.75, abs=0.1)
    assert [b["class"] for b in html.bars] == ["bar", "bar", "bar failed"]
    text = "".join(html.text)
    assert "75.0 users/s: 300 in 4.0 s" in text and "25.0 transfers/s: 50 in 2.0 s" in text
    assert "2023-11-14 22:13:20 UTC" in text  # started, in UTC


def test_without_a_timeline_the_report_says_so_and_long_ones_are_cut(tmp_path: Path) -> None:
    world = make_world(tmp_path, n=3)
    result = run_verify(world.settings, VerifyOptions(include=("balance",)), chain=world.chain)
    assert "no stage recorded" in "".join(parse(render_html(result)).text)
    many = [StageTiming(f"import <b>{i}</b>", 1.7e9 + i, 1.0, i + 1, 100)
            for i in range(MAX_STAGES + 5)]
    html = parse(render_html(result, timeline=many))
    assert [r["data-stage"] for r in html.rows] == [t.stage for t in many[5:]]
    assert "the 5 earlier stages are in timeline.jsonl" in "".join(html.text)
    assert "<b>" not in render_html(result, timeline=many)  # stage names are escaped


def test_cli_verify_records_its_stage_before_writing_the_report(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from cic_seeding.cli import verify_cmd

    monkeypatch.chdir(tmp_path)
    world = make_world(tmp_path, n=7)
    monkeypatch.setattr(verify_cmd, "CONNECT", lambda settings: world.chain)
    report = tmp_path / "report.html"
    append_stage(world.settings.data_dir, STAGES[0])
    assert main(["verify", world.settings.data_dir, "--exclude", "local_key", "--report",
                 str(report)]) == 0
    (verify,) = [t for t in read_timeline(world.settings.data_dir) if t.stage == "verify"]
    assert (verify.done, verify.total, verify.ok) == (7, 7, True)
    rows = parse(report.read_text()).rows
    assert [(r["data-stage"], r["data-done"]) for r in rows] == [("import eth", "300"),
                                                                ("verify", "7")]
    err = capsys.readouterr().err  # stderr is no terminal here: a line, not a bar
    assert "verify: 7/7 users; 7 this run in " in err
    assert main(["verify", "-q", world.settings.data_dir, "--exclude", "local_key"]) == 0
    assert capsys.readouterr().err == ""  # -q: nothing
    assert [t.stage for t in read_timeline(world.settings.data_dir)] == [
        "import eth", "verify", "verify"]
