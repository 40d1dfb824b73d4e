"""Progress of every long stage a command runs (generate, import, sync, traffic, verify).

One way for all of them: on a terminal a bar (rich) on stderr with the count, the rate
(users/s) and the time left; when stderr is not a terminal, a line now and then (at most one
every :data:`EVERY` seconds, or every :data:`STEP` of the way, and never two within
:data:`MIN_GAP` seconds) and one when the stage ends; under ``-q`` nothing. A stage given a
data directory also appends its timing to the directory's timeline (``timeline.jsonl``, read by
the HTML report), whatever is shown.

The library never draws anything: an importer, the syncer, traffic and the verifier report
through callbacks (``progress(done, total)``, the importer's ``progress(n)``), which a
:class:`Stage` takes. The first report of a stage says where it stands when it begins (users
done by earlier runs): the rate and the time left count only what this run does, and a resumed
import's bar starts where the last run stopped and ends at the total. rich is imported only
when a bar is drawn, so ``cic-seed --help`` stays quick.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TextIO

from cic_seeding.datadir.timeline import StageTiming, append_stage

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, ProgressColumn, Task, TaskID
    from rich.text import Text

Mode = Literal["bar", "lines", "off"]
Clock = Callable[[], float]

#: Seconds after which a line is written (lines mode) if the count moved at all.
EVERY = 5.0
#: Fraction of the total that earns a line of its own (lines mode) ...
STEP = 0.1
#: ... but never two lines closer than this many seconds.
MIN_GAP = 1.0


def progress_mode(quiet: bool, stream: TextIO | None = None) -> Mode:
    """``off`` under -q, ``bar`` when ``stream`` (default stderr) is a terminal, else
    ``lines``."""
    if quiet:
        return "off"
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return "bar" if isatty is not None and isatty() else "lines"


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _rate(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


class Meter:
    """Count, total, rate and time left of one stage; ``clock`` is a monotonic clock.

    The first :meth:`update` is the baseline: what was done before this run. The rate is what
    this run did since then per second, the time left what is still to do at that rate."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.since = clock()
        self.base = 0
        self.done = 0
        self.total: int | None = None
        self.reported = False

    def update(self, done: int, total: int | None = None) -> None:
        """Where the stage stands now: ``done`` of ``total`` (None: the total is unchanged)."""
        if total is not None:
            self.total = total
        if not self.reported:
            self.reported = True
            self.base, self.since = done, self.clock()
        self.done = done

    def advance(self, n: int) -> None:
        """``n`` more done (a stage that reported no baseline starts from 0)."""
        if not self.reported:
            self.update(0)
        self.done += n

    @property
    def this_run(self) -> int:
        return max(0, self.done - self.base)

    def elapsed(self, now: float | None = None) -> float:
        return max(0.0, (self.clock() if now is None else now) - self.since)

    def rate(self, now: float | None = None) -> float | None:
        """Done by this run per second (None: nothing done yet, or no time passed)."""
        elapsed = self.elapsed(now)
        if self.this_run <= 0 or elapsed <= 0:
            return None
        return self.this_run / elapsed

    def eta(self, now: float | None = None) -> float | None:
        """Seconds still needed at the current rate (None: unknown)."""
        rate = self.rate(now)
        if self.total is None or rate is None:
            return None
        return max(0, self.total - self.done) / rate

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, self.done / self.total)

    def count(self, unit: str) -> str:
        """``150/300 users`` (``150 users`` while the total is unknown)."""
        return (f"{self.done:,}/{self.total:,} {unit}" if self.total is not None
                else f"{self.done:,} {unit}")

    def line(self, label: str, unit: str, now: float | None = None) -> str:
        """``import eth: 150/300 users (50%), 71.2 users/s, 2 s left``."""
        parts = [self.count(unit)]
        if self.fraction is not None:
            parts[0] += f" ({self.fraction:.0%})"
        rate, eta = self.rate(now), self.eta(now)
        if rate is not None:
            parts.append(f"{_rate(rate)} {unit}/s")
        if eta is not None and self.total is not None and self.done < self.total:
            parts.append(f"{_duration(eta)} left")
        return f"{label}: {', '.join(parts)}"

    def summary(self, label: str, unit: str, seconds: float) -> str:
        """The stage's last line, over its whole ``seconds`` (setting up included):
        ``import eth: 300/300 users; 200 this run in 2.8 s (71.4 users/s)``."""
        speed = (f" ({_rate(self.this_run / seconds)} {unit}/s)"
                 if self.this_run > 0 and seconds > 0 else "")
        return (f"{label}: {self.count(unit)}; {self.this_run:,} this run in {seconds:.1f} s"
                f"{speed}")


class Stage:
    """The progress of one stage, shown as ``mode`` says, recorded in ``data_dir``'s timeline.

    Use it as a context manager around the stage's run; hand :meth:`update` (absolute
    ``done, total``) or :meth:`advance` (``n`` more) to the library as its callback. Set
    :attr:`ok` to False when the run did not succeed (the timeline says so); a stage left by an
    exception is recorded as not ok. Thread-safe: an importer reports from its worker threads.
    """

    def __init__(self, label: str, *, mode: Mode, unit: str = "users",
                 data_dir: str | Path | None = None, stream: TextIO | None = None,
                 console: Console | None = None, clock: Clock = time.monotonic,
                 wall: Clock = time.time, every: float = EVERY, step: float = STEP,
                 min_gap: float = MIN_GAP) -> None:
        self.label, self.mode, self.unit = label, mode, unit
        self.data_dir = data_dir
        self.stream = stream
        self.console = console
        self.clock, self.wall = clock, wall
        self.every, self.step, self.min_gap = every, step, min_gap
        self.meter = Meter(clock)
        self.ok = True
        self.recorded: StageTiming | None = None
        self._lock = threading.Lock()
        self._started = self._wall_started = 0.0
        self._last_line: float | None = None
        self._last_done = 0
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._handlers: list[tuple[logging.StreamHandler[Any], Any]] = []

    # -- the callbacks -----------------------------------------------------------------------
    def update(self, done: int, total: int | None = None) -> None:
        """``done`` of ``total`` (None: unchanged); the first call is the baseline."""
        with self._lock:
            first = not self.meter.reported
            self.meter.update(done, total)
            self._show(first)

    def advance(self, n: int = 1) -> None:
        """``n`` more done."""
        with self._lock:
            self.meter.advance(n)
            self._show(False)

    # -- the context -------------------------------------------------------------------------
    def __enter__(self) -> Stage:
        self._started, self._wall_started = self.clock(), self.wall()
        self.meter.since = self._started
        if self.mode == "bar":
            self._start_bar()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        with self._lock:
            if self._progress is not None:
                self._refresh_bar()
                self._progress.stop()
                self._progress = None
                for handler, stream in self._handlers:
                    handler.setStream(stream)
                self._handlers = []
            elif self.mode == "lines" and self.meter.reported and exc_type is None:
                self._write(self.meter.summary(self.label, self.unit, self.seconds))
        if exc_type is not None:
            self.ok = False
        self._record()

    @property
    def seconds(self) -> float:
        """Since the stage began (its setting up included)."""
        return max(0.0, self.clock() - self._started)

    def _record(self) -> None:
        if self.data_dir is None or not self.meter.reported:
            return
        self.recorded = StageTiming(
            self.label, started=self._wall_started, seconds=self.seconds,
            done=self.meter.this_run, total=self.meter.total, unit=self.unit, ok=self.ok)
        append_stage(self.data_dir, self.recorded)

    # -- lines -------------------------------------------------------------------------------
    def _show(self, first: bool) -> None:
        if self.mode == "bar":
            self._refresh_bar()
        elif self.mode == "lines":
            if first:  # a step of the way is counted from where the stage began
                self._last_done = self.meter.done
            else:
                self._maybe_line()

    def _maybe_line(self) -> None:
        now = self.clock()
        since = now - (self._last_line if self._last_line is not None else self.meter.since)
        total, done = self.meter.total, self.meter.done
        if total is not None and done >= total:
            return  # the stage's last line says it
        stepped = (total is not None and total > 0
                   and done - self._last_done >= self.step * total - 1e-9)
        if since >= self.every or (stepped and since >= self.min_gap):
            self._last_line, self._last_done = now, done
            self._write(self.meter.line(self.label, self.unit, now))

    def _write(self, line: str) -> None:
        stream = self.stream if self.stream is not None else sys.stderr
        stream.write(line + "\n")
        stream.flush()

    # -- the bar -----------------------------------------------------------------------------
    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        console = self.console or Console(file=self.stream or sys.stderr)
        count, rate, left = _columns()
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), count, rate, TimeElapsedColumn(),
            left, console=console, refresh_per_second=4, redirect_stdout=False,
            get_time=self.clock)
        self._task = self._progress.add_task(self.label, total=None, meter=self.meter,
                                             unit=self.unit)
        self._progress.start()
        # log records go above the bar, not through it: rich stands in for stderr meanwhile
        proxy = sys.stderr
        proxied = getattr(proxy, "rich_proxied_file", None)
        if proxied is not None:
            for handler in logging.getLogger().handlers:
                if isinstance(handler, logging.StreamHandler) and handler.stream is proxied:
                    handler.setStream(proxy)
                    self._handlers.append((handler, proxied))

    def _refresh_bar(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=self.meter.done,
                                  total=self.meter.total)


def stage(label: str, quiet: bool, *, unit: str = "users",
          data_dir: str | Path | None = None) -> Stage:
    """The :class:`Stage` a command shows on stderr: a bar on a terminal, lines elsewhere,
    nothing under ``quiet``; recorded in ``data_dir``'s timeline when given."""
    return Stage(label, mode=progress_mode(quiet), unit=unit, data_dir=data_dir)


def _columns() -> tuple[ProgressColumn, ProgressColumn, ProgressColumn]:
    """The bar's count, rate and time-left columns, read from the stage's :class:`Meter`."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Count(ProgressColumn):
        def render(self, task: Task) -> Text:
            meter: Meter = task.fields["meter"]
            return Text(meter.count(task.fields["unit"]) if meter.reported else "starting")

    class Rate(ProgressColumn):
        def render(self, task: Task) -> Text:
            rate = task.fields["meter"].rate()
            unit = task.fields["unit"]
            return Text(f"{_rate(rate)} {unit}/s" if rate is not None else f"- {unit}/s")

    class Left(ProgressColumn):
        def render(self, task: Task) -> Text:
            meter: Meter = task.fields["meter"]
            if meter.total is not None and meter.done >= meter.total:
                return Text("done")
            eta = meter.eta()
            return Text(f"{_duration(eta)} left" if eta is not None else "")

    return Count(), Rate(), Left()
