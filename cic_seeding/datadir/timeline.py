"""``timeline.jsonl``: when each long stage ran on a data directory, for how long, over how many
users -- the run's timeline the HTML report draws (users per second per stage).

Each finished stage (an import, a sync, a traffic replay, a verification) appends one JSON line
``{"stage", "started", "seconds", "done", "total", "unit", "ok"}``. One ``write`` of one line
to a file opened for appending, so an import and a sync running at once never mix their lines.
The timeline is a record, never a condition: a line that cannot be written is a warning, one
that cannot be read is left out (bad input costs one record), and nothing reads it to decide
anything.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeGuard

log = logging.getLogger(__name__)

TIMELINE_NAME = "timeline.jsonl"


@dataclass(frozen=True)
class StageTiming:
    """One run of one stage: ``done`` of its ``total`` units (users, transfers) were handled by
    this run (those done before it are not counted), in ``seconds`` from ``started`` (Unix
    time). ``ok`` is False when the run failed or was stopped."""

    stage: str
    started: float
    seconds: float
    done: int
    total: int | None = None
    unit: str = "users"
    ok: bool = True

    @property
    def rate(self) -> float | None:
        """Units per second (None: nothing was done, or no time passed)."""
        if self.done <= 0 or self.seconds <= 0:
            return None
        return self.done / self.seconds

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, raw: Any) -> StageTiming:
        """The timing a line holds; ValueError naming what is wrong with it."""
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        stage, started, seconds = raw.get("stage"), raw.get("started"), raw.get("seconds")
        done, total, unit, ok = (raw.get("done"), raw.get("total"), raw.get("unit", "users"),
                                 raw.get("ok", True))
        if not isinstance(stage, str) or not stage:
            raise ValueError("field stage: missing or not a string")
        if not _seconds(started) or not _seconds(seconds):
            raise ValueError("field started or seconds: not a number of seconds")
        if not isinstance(done, int) or isinstance(done, bool) or done < 0:
            raise ValueError("field done: not a count")
        if total is not None and (not isinstance(total, int) or isinstance(total, bool)
                                  or total < 0):
            raise ValueError("field total: not a count")
        if not isinstance(unit, str) or not isinstance(ok, bool):
            raise ValueError("field unit or ok: wrong type")
        return cls(stage, float(started), float(seconds), done, total, unit, ok)


def _seconds(value: object) -> TypeGuard[float]:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0)


def timeline_path(root: str | Path) -> Path:
    return Path(root) / TIMELINE_NAME


def append_stage(root: str | Path, timing: StageTiming) -> bool:
    """Append ``timing`` to the timeline of the data directory ``root``; False (and a warning)
    if it cannot be written. A directory that does not exist is not made."""
    path = timeline_path(root)
    if not path.parent.is_dir():
        return False
    line = (timing.to_json() + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError as exc:
        log.warning("the timeline %s was not written: %s", path, exc.strerror or exc)
        return False
    return True


def read_timeline(root: str | Path) -> list[StageTiming]:
    """Every stage the timeline of ``root`` holds, in the order they finished (none: the file
    is missing). A line that is not a stage timing is left out with a warning naming it."""
    path = timeline_path(root)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning("the timeline %s cannot be read: %s", path, exc.strerror or exc)
        return []
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(StageTiming.from_dict(json.loads(line)))
        except ValueError as exc:  # JSONDecodeError is one
            log.warning("%s line %d left out: %s", path.name, lineno, exc)
    return out
