"""Reading logs over block ranges that shrink when a provider refuses or a range holds many
logs, and grow when it copes.

Ranges are closed-start/open-end: ``[start, end)``. ``eth_getLogs`` takes an inclusive
``toBlock``, so the call asks for ``end - 1``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from cic_seeding.errors import RpcError

# What providers say when a range or result set is too large.
_TOO_LARGE = re.compile(r"range|too many|limit|exceed|response size|query returned more than|"
                        r"timeout|10000", re.IGNORECASE)

GetLogs = Callable[[int, int], Sequence[Any]]  # (from_block, to_block inclusive) -> logs


def is_range_refusal(exc: Exception) -> bool:
    return isinstance(exc, RpcError) and bool(_TOO_LARGE.search(str(exc)))


class LogReader:
    """Yields ``(start, end, logs)`` chunks covering ``[start, end)`` in order.

    The span halves on a refusal (down to one block, then the error is raised) and doubles
    after a success, up to ``max_span``; after a range of more than ``max_logs`` logs it
    shrinks to what should hold about ``max_logs``. It starts at ``span`` (one block by
    default: where 100,000 registrations sit in 50 blocks, a first range of 2,000 blocks was
    one answer of 50 MB, the sync's peak memory).
    """

    def __init__(self, get_logs: GetLogs, *, span: int = 1, max_span: int = 10_000,
                 max_logs: int = 2_000) -> None:
        self.get_logs = get_logs
        self.span = span
        self.max_span = max_span
        self.max_logs = max_logs

    def read(self, start: int, end: int) -> Iterator[tuple[int, int, list[Any]]]:
        position = start
        while position < end:
            stop = min(end, position + self.span)
            try:
                logs = list(self.get_logs(position, stop - 1))
            except Exception as exc:
                if not is_range_refusal(exc) or stop - position <= 1:
                    raise
                self.span = max(1, (stop - position) // 2)
                continue
            yield position, stop, logs
            if len(logs) > self.max_logs:
                self.span = max(1, (stop - position) * self.max_logs // len(logs))
            else:
                self.span = min(self.max_span, self.span * 2)
            position = stop
