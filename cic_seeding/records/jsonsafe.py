"""JSON from outside the tool (records, manifests, request bodies), parsed without trusting
its nesting.

The C JSON decoder recurses on the C stack, guarded only by Python's recursion limit, and a
library every chain command imports (``py_ecc``, through ``eth_keys``) raises that limit to
100,000: a document of a few hundred kilobytes of ``[`` would crash the process (SIGSEGV)
instead of raising RecursionError. :func:`loads` refuses such a document with a ValueError first.
"""

from __future__ import annotations

import json
from typing import Any

#: Deepest nesting accepted; CIC documents nest a handful of levels.
MAX_DEPTH = 100
_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_OPEN, _CLOSE = frozenset(b"[{"), frozenset(b"]}")


def loads(raw: bytes | str, max_depth: int = MAX_DEPTH, **kw: Any) -> Any:
    """``json.loads(raw, **kw)``; ValueError if it is not JSON or nests deeper than
    ``max_depth``."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if data.count(b"[") + data.count(b"{") > max_depth and nesting(data) > max_depth:
        raise ValueError(f"JSON nested deeper than {max_depth} levels")
    return json.loads(raw, **kw)


def nesting(data: bytes) -> int:
    """The deepest ``[``/``{`` nesting of ``data`` outside strings (a scan, no parsing)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == _BACKSLASH:
                escaped = True
            elif byte == _QUOTE:
                in_string = False
        elif byte == _QUOTE:
            in_string = True
        elif byte in _OPEN:
            depth += 1
            deepest = max(deepest, depth)
        elif byte in _CLOSE:
            depth -= 1
    return deepest
