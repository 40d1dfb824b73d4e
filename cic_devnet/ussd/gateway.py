"""One protocol request in, one reply out: session bookkeeping around :class:`.menus.Menus`.

``text`` holds every input of the session so far joined by ``*``; only the inputs beyond
those already handled are new (a repeated request gets the same reply again, so a client may
retry safely). The reply is ``CON ...`` (the session goes on) or ``END ...``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cic_devnet.ussd.menus import Menus, Session
from cic_devnet.ussd.sessions import Sessions
from cic_seeding.records.phone import is_e164
from cic_seeding.ussd.texts import text

#: Inputs one session may hold; a longer session is ended.
MAX_INPUTS = 64
MAX_TEXT = 1024


@dataclass(frozen=True)
class Answer:
    status: int
    body: str


def _reply(end: bool, screen: str) -> str:
    return f"{'END' if end else 'CON'} {screen}"


class Gateway:
    """Protocol handling of one gateway (thread-safe as its stores are)."""

    def __init__(self, menus: Menus, sessions: Sessions, service_codes: set[str]) -> None:
        self.menus = menus
        self.sessions = sessions
        self.service_codes = service_codes

    def handle(self, session_id: str, service_code: str, phone: str, text_: str) -> Answer:
        if not session_id or len(session_id) > 128:
            return Answer(400, "END sessionId is missing or longer than 128 characters")
        if service_code not in self.service_codes:
            return Answer(400, f"END Unknown service code {service_code[:32]!r}; this gateway "
                               f"serves {', '.join(sorted(self.service_codes))}")
        if not is_e164(phone):
            return Answer(400, f"END {text('invalid_phone')}")
        if len(text_) > MAX_TEXT:
            return Answer(400, f"END {text('invalid_choice')}")
        inputs = text_.split("*") if text_ else []
        session = self.sessions.get(session_id)
        if session is not None and session.phone != phone:
            return Answer(400, "END this session belongs to another phone number")
        if session is None:
            session = Session(phone, data={"sid": hashlib.sha256(session_id.encode())
                                           .hexdigest()[:32]})
            opened = self.menus.start(session)
            session.state, session.ended = opened.state, opened.end
            session.last = _reply(opened.end, opened.screen)
        new = inputs[session.seen:]
        for value in new:
            if session.ended:
                break
            if session.seen >= MAX_INPUTS:
                session.ended, session.last = True, f"END {text('invalid_choice')}"
                break
            reply = self.menus.step(session, value)
            session.seen += 1
            session.state, session.ended = reply.state, reply.end
            session.last = _reply(reply.end, reply.screen)
        session.seen = max(session.seen, len(inputs)) if session.ended else session.seen
        self.sessions.put(session_id, session)
        return Answer(200, session.last)
