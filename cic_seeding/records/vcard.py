"""vCard 3.0 as CIC stores it: base64 of CRLF-terminated text."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass


@dataclass(frozen=True)
class VCard:
    given: str
    family: str
    phone: str
    email: str | None = None


def _escape(value: str) -> str:
    return (value.replace("\\", "\\\\").replace(",", "\\,").replace(";", "\\;")
            .replace("\n", "\\n"))


def _unescape(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            nxt = value[i + 1]
            out.append("\n" if nxt in "nN" else nxt)
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _split_unescaped(value: str, sep: str) -> list[str]:
    parts, cur, i = [], [], 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            cur.append(value[i:i + 2])
            i += 2
            continue
        if value[i] == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(value[i])
        i += 1
    parts.append("".join(cur))
    return parts


def encode_vcard(card: VCard) -> str:
    """The base64 text of the vCard."""
    lines = [
        "BEGIN:VCARD",
        "VERSION:3.0",
        f"N:{_escape(card.family)};{_escape(card.given)};;;",
        f"FN:{_escape(card.given)} {_escape(card.family)}",
        f"TEL;TYPE=CELL:{card.phone}",
    ]
    if card.email:
        lines.append(f"EMAIL:{_escape(card.email)}")
    lines.append("END:VCARD")
    text = "\r\n".join(lines) + "\r\n"
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def decode_vcard(b64: str) -> VCard:
    """Parse a base64 vCard 3.0; ValueError says what is wrong."""
    try:
        text = base64.b64decode(b64, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"vcard is not base64 UTF-8 text: {exc}") from None
    lines = text.split("\r\n")
    if lines[-1] == "":
        lines.pop()
    if not lines or lines[0] != "BEGIN:VCARD" or lines[-1] != "END:VCARD":
        raise ValueError("vcard must start with BEGIN:VCARD and end with END:VCARD (CRLF lines)")
    fields: dict[str, str] = {}
    for line in lines[1:-1]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"vcard line without ':': {line!r}")
        fields.setdefault(name.split(";")[0].upper(), value)
    if fields.get("VERSION") != "3.0":
        raise ValueError("vcard VERSION must be 3.0")
    for required in ("N", "FN", "TEL"):
        if required not in fields:
            raise ValueError(f"vcard lacks {required}")
    n_parts = _split_unescaped(fields["N"], ";")
    if len(n_parts) < 2:
        raise ValueError("vcard N must be Family;Given;;;")
    return VCard(given=_unescape(n_parts[1]), family=_unescape(n_parts[0]), phone=fields["TEL"],
                 email=_unescape(fields["EMAIL"]) if "EMAIL" in fields else None)
