"""JSON from outside the tool (records, manifests, request bodies), parsed without trusting
its nesting.

The C JSON decoder recurses on the C stack, guarded only by Python's recursion limit, and a
library every chain command imports (``py_ecc``, through ``eth_keys``) raises that limit to
100,000: a document of a few hundred kilobytes of ``[`` would crash the process (SIGSEGV)
instead of raising RecursionError. :func:`loads` refuses such a document with a ValueError first.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: Deepest nesting accepted; CIC documents nest a handful of levels.
MAX_DEPTH = 100
_OPEN = frozenset(b"[{")
#: A JSON string literal: backslash escapes the next byte; an unterminated one runs to the end.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET = bytes(range(256)).translate(None, b"[]{}")


def loads(raw: bytes | str, max_depth: int = MAX_DEPTH, **kw: Any) -> Any:
    """``json.loads(raw, **kw)``; ValueError if it is not JSON or nests deeper than
    ``max_depth``."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if data.count(b"[") + data.count(b"{") > max_depth and nesting(data) > max_depth:
        raise ValueError(f"JSON nested deeper than {max_depth} levels")
    return json.loads(raw, **kw)


def nesting(data: bytes) -> int:
    """The deepest ``[``/``{`` nesting of ``data`` outside strings (a scan, no parsing).

    String literals (an unterminated one runs to the end) are cut out by a regular expression
    and only the brackets left are walked: a large request body costs a few milliseconds,
    not a Python loop over every byte.
    """
    depth = deepest = 0
    for byte in _STRING.sub(b"", data).translate(None, _NOT_BRACKET):
        if byte in _OPEN:
            depth += 1
            if depth > deepest:
                deepest = depth
        else:
            depth -= 1
    return deepest
