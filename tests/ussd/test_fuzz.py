"""Random sessions against the real gateway: never a 5xx, never a half-created account."""

from __future__ import annotations

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ussd.world import Stack

_INPUT = st.one_of(
    st.sampled_from(["", "0", "1", "2", "3", "4", "9", "00", "1234", "12345", "abc", "Amina",
                     "Otieno", "Kibera", "+254700000001", "0712345678", "1.5", "-1", "1e9",
                     "NaN", " ", "'", "é", "\u0000", "*"]),
    st.text(max_size=12),
    st.from_regex(r"[0-9]{4}", fullmatch=True),
)


_REGISTRATION = ["1", "Amina", "Otieno", "2", "Kibera", "1234", "1234", "1", "1234"]


@st.composite
def _requests(draw: st.DrawFn) -> tuple[str, str, list[str]]:
    phone = draw(st.one_of(st.sampled_from([f"+2547990000{i:02d}" for i in range(4)]),
                           st.text(max_size=16)))
    session = draw(st.sampled_from(["f1", "f2", "f3"]) | st.text(min_size=1, max_size=8))
    base = draw(st.sampled_from([[], _REGISTRATION, ["2", "Juma", "K", "1", "Nyeri", "0000"]]))
    cut = draw(st.integers(min_value=0, max_value=len(base)))
    tails = draw(st.lists(st.lists(_INPUT, max_size=6), min_size=1, max_size=6))
    return phone, session, ["*".join(base[:cut] + tail) for tail in tails]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=_requests(), code=st.sampled_from(["*483*46#", "*483*46#", "*1#", ""]))
def test_random_sessions_never_break_the_gateway(stack: Stack, case: tuple[str, str, list[str]],
                                                 code: str) -> None:
    phone, session, texts = case
    with requests.Session() as http:
        for text in texts:
            r = http.post(stack.gateway.url, data={"sessionId": session, "serviceCode": code,
                                                   "phoneNumber": phone, "text": text},
                          timeout=30)
            assert r.status_code < 500, (r.status_code, r.text, phone, session, text)
            assert r.text.startswith(("CON ", "END ")), r.text


def test_random_phase_left_only_whole_accounts(stack: Stack) -> None:
    """Runs after the fuzzing above (file order): every row is a whole account."""
    rows = stack.sql("SELECT phone, status, language, pin_hash, given_name, family_name, "
                     "gender, location FROM ussd_accounts")
    for phone, status, language, pin_hash, *profile in rows:
        assert status in (1, 2, 3, 4) and language in ("en", "sw"), phone
        assert pin_hash.startswith("$2") and len(pin_hash) == 60, phone
        assert all(profile) and profile[2] in ("male", "female", "other"), phone
