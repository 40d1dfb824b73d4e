"""Progress of the long stages (cic_seeding/cli/progress.py) and the data directory's timeline:
a bar on a terminal, lines elsewhere, nothing under -q; every stage recorded, whatever is shown.

Time is a fake clock the tests move, so every count, rate and line is exact."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import threading
from pathlib import Path

import pytest
from rich.console import Console

from cic_seeding.cli.progress import Meter, Stage, progress_mode
from cic_seeding.config import Settings
from cic_seeding.datadir import StageTiming, append_stage, read_timeline
from tests.importers.test_base import FakeImporter, make_dir


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def lines_stage(clock: Clock, label: str = "import eth", **kw: object) -> tuple[Stage, Stream]:
    out = Stream(tty=False)
    return Stage(label, mode="lines", stream=out, clock=clock, wall=lambda: 1.7e9,
                 **kw), out  # type: ignore[arg-type]


def test_a_bar_on_a_terminal_lines_elsewhere_nothing_under_quiet() -> None:
    assert progress_mode(False, Stream(tty=True)) == "bar"
    assert progress_mode(False, Stream(tty=False)) == "lines"
    assert progress_mode(True, Stream(tty=True)) == "off"
    assert progress_mode(True, Stream(tty=False)) == "off"


def test_the_meter_counts_this_run_from_where_the_stage_began() -> None:
    clock = Clock()
    meter = Meter(clock)
    meter.update(100, 300)  # done by earlier runs: not this run's speed
    clock.now = 2.0
    meter.advance(50)
    assert (meter.this_run, meter.rate(), meter.eta()) == (50, 25.0, 6.0)
    assert meter.line("import eth", "users") == (
        "import eth: 150/300 users (50%), 25.0 users/s, 6 s left")
    clock.now = 4.0
    meter.update(300)
    assert meter.line("import eth", "users") == "import eth: 300/300 users (100%), 50.0 users/s"
    assert meter.summary("import eth", "users", 5.0) == (
        "import eth: 300/300 users; 200 this run in 5.0 s (40.0 users/s)")


def test_the_meter_without_a_total_or_progress_says_only_what_it_knows() -> None:
    clock = Clock()
    meter = Meter(clock)
    assert meter.rate() is None and meter.eta() is None
    meter.advance(3)  # no baseline reported: it counts from 0
    assert (meter.base, meter.done, meter.total) == (0, 3, None)
    clock.now = 1.0
    assert meter.line("sync eth", "users") == "sync eth: 3 users, 3.0 users/s"


def test_lines_come_every_tenth_of_the_way_but_never_two_within_a_second() -> None:
    clock = Clock()
    stage, out = lines_stage(clock)
    with stage:
        stage.update(0, 100)
        for _ in range(10):
            clock.now += 1.5
            stage.advance(10)
    assert out.getvalue().splitlines() == [
        "import eth: 10/100 users (10%), 6.7 users/s, 14 s left",
        "import eth: 20/100 users (20%), 6.7 users/s, 12 s left",
        "import eth: 30/100 users (30%), 6.7 users/s, 10 s left",
        "import eth: 40/100 users (40%), 6.7 users/s, 9 s left",
        "import eth: 50/100 users (50%), 6.7 users/s, 8 s left",
        "import eth: 60/100 users (60%), 6.7 users/s, 6 s left",
        "import eth: 70/100 users (70%), 6.7 users/s, 4 s left",
        "import eth: 80/100 users (80%), 6.7 users/s, 3 s left",
        "import eth: 90/100 users (90%), 6.7 users/s, 2 s left",
        "import eth: 100/100 users; 100 this run in 15.0 s (6.7 users/s)"]


def test_a_quick_stage_writes_its_last_line_only() -> None:
    clock = Clock()
    stage, out = lines_stage(clock)
    with stage:
        stage.update(0, 1000)
        for _ in range(1000):
            clock.now += 0.0005
            stage.advance(1)
    assert out.getvalue().splitlines() == [
        "import eth: 1,000/1,000 users; 1,000 this run in 0.5 s (2,000 users/s)"]


def test_without_a_total_a_line_comes_every_few_seconds() -> None:
    clock = Clock()
    stage, out = lines_stage(clock, "sync eth")
    with stage:
        stage.update(0)
        for _ in range(12):
            clock.now += 1.0
            stage.advance(1)
    assert out.getvalue().splitlines() == [
        "sync eth: 5 users, 1.0 users/s", "sync eth: 10 users, 1.0 users/s",
        "sync eth: 12 users; 12 this run in 12.0 s (1.0 users/s)"]


def test_quiet_shows_nothing_and_still_records_the_stage(tmp_path: Path) -> None:
    clock = Clock()
    out = Stream(tty=True)
    with Stage("sync eth", mode="off", stream=out, data_dir=tmp_path, clock=clock,
               wall=lambda: 1.7e9) as stage:
        clock.now = 1.0  # connecting, reading the data directory
        stage.update(10, 40)
        clock.now = 4.0
        stage.update(40)
    assert out.getvalue() == ""
    assert read_timeline(tmp_path) == [StageTiming("sync eth", 1.7e9, 4.0, 30, 40)]
    assert read_timeline(tmp_path)[0].rate == 7.5


def test_a_stage_left_by_an_error_is_recorded_as_failed_without_a_last_line(
        tmp_path: Path) -> None:
    clock = Clock()
    stage, out = lines_stage(clock, data_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt), stage:
        stage.update(0, 10)
        clock.now = 2.0
        stage.advance(4)
        raise KeyboardInterrupt
    assert out.getvalue().splitlines() == [  # no last line
        "import eth: 4/10 users (40%), 2.0 users/s, 3 s left"]
    (timing,) = read_timeline(tmp_path)
    assert (timing.done, timing.total, timing.ok, timing.seconds) == (4, 10, False, 2.0)


def test_a_stage_that_never_reported_records_nothing(tmp_path: Path) -> None:
    stage, out = lines_stage(Clock(), data_dir=tmp_path)
    with stage:
        pass
    assert out.getvalue() == "" and not (tmp_path / "timeline.jsonl").exists()


def _frames(text: str) -> list[str]:
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    return [f.strip() for f in re.split(r"[\r\n]", plain) if f.strip()]


def test_the_bar_shows_count_rate_and_time_left_and_ends_at_the_total() -> None:
    clock = Clock()
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    with Stage("import eth", mode="bar", console=console, clock=clock) as stage:
        stage.update(100, 300)  # a resumed import: 100 done by the run before
        clock.now = 4.0
        stage.advance(200)
    last = _frames(buffer.getvalue())[-1]
    assert last.startswith("import eth") and "300/300 users" in last
    assert "50.0 users/s" in last and "0:00:04" in last and last.endswith("done")


def test_log_records_go_above_the_bar_and_their_stream_comes_back() -> None:
    root = logging.getLogger()
    level = root.level  # an in-process CLI run of another test may have set it (-q: errors)
    root.setLevel(logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    root.addHandler(handler)
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    try:
        with Stage("sync eth", mode="bar", console=console, clock=Clock()) as stage:
            stage.update(0, 2)
            logging.getLogger("cic_seeding.test").warning("a reorg was seen")
            stage.update(2)
        assert handler.stream is sys.stderr
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert "a reorg was seen" in _frames(buffer.getvalue())


def test_a_resumed_import_counts_from_where_the_last_run_stopped(tmp_path: Path) -> None:
    data = make_dir(tmp_path / "data", 55)
    settings = Settings(data_dir=str(data.root), batch_size=10, rpc_retries=3)
    chain: set[str] = set()

    def run(limit: int | None) -> tuple[Stage, str]:
        importer = FakeImporter(settings, chain=chain)
        stage, out = lines_stage(Clock(), "import fake", data_dir=data.root)
        try:
            with stage:
                importer.progress_start = stage.update
                importer.progress = stage.advance
                assert importer.run(limit=limit).ok
        finally:
            importer.close()
        return stage, out.getvalue()

    first, _ = run(20)
    assert (first.meter.base, first.meter.done, first.meter.total) == (0, 20, 20)
    second, shown = run(None)
    assert (second.meter.base, second.meter.done, second.meter.total) == (20, 55, 55)
    assert shown.startswith("import fake: 55/55 users; 35 this run in ")
    assert [(t.stage, t.done, t.total) for t in read_timeline(data.root)] == [
        ("import fake", 20, 20), ("import fake", 35, 55)]


def test_the_timeline_keeps_good_lines_and_leaves_out_bad_ones(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = StageTiming("import eth", 1.7e9, 2.5, 30, 30)
    assert append_stage(tmp_path, good)
    with open(tmp_path / "timeline.jsonl", "a", encoding="utf-8") as fh:
        fh.write("not json\n")
        fh.write(json.dumps({"stage": "sync eth", "started": 1.7e9, "seconds": -1,
                             "done": 3}) + "\n")
        fh.write(json.dumps({"stage": "", "started": 1.7e9, "seconds": 1, "done": 3}) + "\n")
        fh.write(json.dumps([1, 2]) + "\n\n")
        fh.write(json.dumps({"stage": "verify", "started": 1.7e9, "seconds": 1,
                             "done": 30}) + "\n")
    with caplog.at_level(logging.WARNING):
        assert read_timeline(tmp_path) == [good, StageTiming("verify", 1.7e9, 1.0, 30)]
    assert [r.getMessage().split(" left out")[0] for r in caplog.records] == [
        f"timeline.jsonl line {n}" for n in (2, 3, 4, 5)]


def test_a_missing_directory_gets_no_timeline(tmp_path: Path) -> None:
    assert not append_stage(tmp_path / "none", StageTiming("verify", 1.7e9, 1.0, 1))
    assert not (tmp_path / "none").exists() and read_timeline(tmp_path / "none") == []


def test_stages_appended_at_once_never_mix_their_lines(tmp_path: Path) -> None:
    def append(name: str) -> None:
        for i in range(200):
            append_stage(tmp_path, StageTiming(name, 1.7e9, float(i), i, 200))

    threads = [threading.Thread(target=append, args=(f"stage {n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    timeline = read_timeline(tmp_path)
    assert len(timeline) == 800
    assert {t.stage: sum(1 for x in timeline if x.stage == t.stage) for t in timeline} == {
        f"stage {n}": 200 for n in range(4)}
