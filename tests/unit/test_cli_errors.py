"""Every command's usage errors are one line, exit 2, no traceback."""

from __future__ import annotations

import pytest

from tests.helpers import run_cli


@pytest.mark.parametrize("args", [
    ("sync", "--bogus"), ("import",), ("devnet", "up", "--port", "x"), ("doctor", "--nope"),
    ("demo", "--users", "many"), ("import", "nosuch", "--dir", "/nonexistent"),
])
def test_usage_errors_are_one_line(args: tuple[str, ...]) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
