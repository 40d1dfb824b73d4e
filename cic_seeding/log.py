"""Logging set-up shared by every command: verbosity levels and secret redaction; the wording of
counts in output lines."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable


def plural(n: int, word: str) -> str:
    """``1 user``, ``2 users``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class RedactSecrets(logging.Filter):
    """Replaces every known secret in a log record's final message with ``****``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            for secret in self.secrets:
                message = message.replace(secret, "****")
            record.msg, record.args = message, None
        return True


def setup_logging(verbosity: int, secrets: Iterable[str] = ()) -> None:
    """-q: errors only; default: warnings; -v: info; -vv: debug."""
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    if verbosity < -1:
        level = logging.ERROR
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("urllib3", "web3", "asyncio", "faker"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
