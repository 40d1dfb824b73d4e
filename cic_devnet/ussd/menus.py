"""The gateway's menus as a state machine: one input in, the next screen out.

A session's state (``state``, ``data``) lives in Redis between requests (:mod:`.sessions`);
accounts live in PostgreSQL (:class:`~cic_seeding.ussd.accounts.Accounts`). Invalid input
re-prompts the same screen with a message; nothing here raises on user input.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from cic_seeding.records.phone import is_e164
from cic_seeding.ussd.accounts import ACTIVE, LOCKED, MAX_PIN_ATTEMPTS, PENDING, RESET, Account
from cic_seeding.ussd.pins import PIN_RE, check_pin, hash_pin
from cic_seeding.ussd.texts import text

GENDERS = {"1": "male", "2": "female", "3": "other"}
LANGUAGE_CHOICE = {"1": "en", "2": "sw"}
_NAME_EXTRA = set(" '-.")
_PLACE_EXTRA = set(" '-.,")


class Store(Protocol):
    def get(self, phone: str) -> Account | None: ...
    def create_pending(self, phone: str, *, language: str, pin_hash: str, given_name: str,
                       family_name: str, gender: str, location: str) -> bool: ...
    def pin_failed(self, phone: str) -> Account | None: ...
    def pin_ok(self, phone: str) -> None: ...
    def set_pin(self, phone: str, pin_hash: str) -> None: ...
    def set_language(self, phone: str, language: str) -> None: ...


class Wallet(Protocol):
    def balance(self, address: str) -> tuple[int, int, str]:
        """(amount in the smallest unit, decimals, symbol)"""
    def transfer(self, sender: str, recipient: str, amount: int, request_id: str) -> None: ...


@dataclass
class Session:
    """What a session remembers between requests."""

    phone: str
    state: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    seen: int = 0  # inputs of ``text`` handled so far
    last: str = ""  # the last reply, answered again to a repeated request
    ended: bool = False


@dataclass(frozen=True)
class Reply:
    state: str
    screen: str
    end: bool = False


def valid_name(value: str) -> bool:
    value = value.strip()
    return 0 < len(value) <= 40 and any(c.isalpha() for c in value) and all(
        c.isalpha() or c in _NAME_EXTRA for c in value)


def valid_place(value: str) -> bool:
    value = value.strip()
    return 0 < len(value) <= 40 and any(c.isalnum() for c in value) and all(
        c.isalnum() or c in _PLACE_EXTRA for c in value)


def normal_phone(value: str) -> str | None:
    """E.164 of a Kenyan number typed as +2547..., 2547... or 07... (None: not a number)."""
    value = value.strip()
    if re.fullmatch(r"0[17][0-9]{8}", value):
        value = "+254" + value[1:]
    elif re.fullmatch(r"254[17][0-9]{8}", value):
        value = "+" + value
    return value if is_e164(value) else None


def format_amount(units: int, decimals: int) -> str:
    value = Decimal(units).scaleb(-decimals)
    out = f"{value:f}"
    return out.rstrip("0").rstrip(".") if "." in out else out


def parse_amount(value: str, decimals: int) -> int | None:
    try:
        amount = Decimal(value.strip())
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount <= 0 or amount > Decimal(10) ** 12:
        return None
    units = amount.scaleb(decimals)
    return int(units) if units == units.to_integral_value() else None


class Menus:
    """The screens of one gateway; :meth:`start` opens a session, :meth:`step` takes an input."""

    def __init__(self, accounts: Store, wallet: Wallet, *, pin_rounds: int,
                 on_registered: Callable[[str], None] = lambda phone: None) -> None:
        self.accounts = accounts
        self.wallet = wallet
        self.pin_rounds = pin_rounds
        self.on_registered = on_registered

    # -- entry -------------------------------------------------------------------------------
    def start(self, session: Session) -> Reply:
        account = self.accounts.get(session.phone)
        if account is None:
            return Reply("reg_lang", text("choose_language"))
        lang = account.language
        if account.status == PENDING:
            return Reply("", text("pending", lang), end=True)
        if account.status == LOCKED:
            return Reply("", text("locked", lang), end=True)
        if account.status == RESET:
            return Reply("reset_pin", text("new_pin", lang))
        return Reply("main", text("main", lang))

    def step(self, session: Session, value: str) -> Reply:
        state = session.state
        if state.startswith("reg_"):
            return getattr(self, f"_{state}")(session, value)  # type: ignore[no-any-return]
        account = self.accounts.get(session.phone)
        if account is None or account.status == PENDING:
            return self.start(session) if account is None else Reply(
                "", text("pending", account.language), end=True)
        if account.status == LOCKED:
            return Reply("", text("locked", account.language), end=True)
        handler = getattr(self, f"_{state}", None)
        if handler is None:
            return Reply("", text("unavailable", account.language), end=True)
        return handler(session, account, value)  # type: ignore[no-any-return]

    # -- registration ------------------------------------------------------------------------
    def _reg_lang(self, s: Session, value: str) -> Reply:
        lang = LANGUAGE_CHOICE.get(value.strip())
        if lang is None:
            return Reply("reg_lang", f"{text('invalid_choice')}\n{text('choose_language')}")
        s.data["lang"] = lang
        return Reply("reg_given", text("given_name", lang))

    def _reg_given(self, s: Session, value: str) -> Reply:
        return self._name(s, value, "given", "reg_given", "given_name", "reg_family",
                          "family_name", valid_name, "invalid_name")

    def _reg_family(self, s: Session, value: str) -> Reply:
        return self._name(s, value, "family", "reg_family", "family_name", "reg_gender",
                          "gender", valid_name, "invalid_name")

    def _reg_location(self, s: Session, value: str) -> Reply:
        return self._name(s, value, "location", "reg_location", "location", "reg_pin",
                          "new_pin", valid_place, "invalid_location")

    def _name(self, s: Session, value: str, key: str, state: str, prompt: str, following: str,
              next_prompt: str, valid: Callable[[str], bool], invalid: str) -> Reply:
        lang = s.data.get("lang", "en")
        if not valid(value):
            return Reply(state, f"{text(invalid, lang)}\n{text(prompt, lang)}")
        s.data[key] = value.strip()
        return Reply(following, text(next_prompt, lang))

    def _reg_gender(self, s: Session, value: str) -> Reply:
        lang = s.data.get("lang", "en")
        gender = GENDERS.get(value.strip())
        if gender is None:
            return Reply("reg_gender", f"{text('invalid_choice', lang)}\n{text('gender', lang)}")
        s.data["gender"] = gender
        return Reply("reg_location", text("location", lang))

    def _reg_pin(self, s: Session, value: str) -> Reply:
        lang = s.data.get("lang", "en")
        if not PIN_RE.fullmatch(value):
            return Reply("reg_pin", f"{text('invalid_pin', lang)}\n{text('new_pin', lang)}")
        s.data["pin_hash"] = hash_pin(value, self.pin_rounds)  # never the PIN in clear
        return Reply("reg_pin2", text("confirm_pin", lang))

    def _reg_pin2(self, s: Session, value: str) -> Reply:
        lang = s.data.get("lang", "en")
        if not PIN_RE.fullmatch(value):
            return Reply("reg_pin2", f"{text('invalid_pin', lang)}\n{text('confirm_pin', lang)}")
        if not check_pin(value, s.data.get("pin_hash")):
            return Reply("reg_pin", f"{text('pin_mismatch', lang)}\n{text('new_pin', lang)}")
        created = self.accounts.create_pending(
            s.phone, language=lang, pin_hash=s.data["pin_hash"], given_name=s.data["given"],
            family_name=s.data["family"], gender=s.data["gender"],
            location=s.data["location"])
        for key in ("pin_hash", "given", "family", "gender", "location"):
            s.data.pop(key, None)
        if not created:
            return Reply("", text("pending", lang), end=True)
        self.on_registered(s.phone)
        return Reply("", text("registered", lang), end=True)

    # -- PIN ---------------------------------------------------------------------------------
    def _pin(self, s: Session, account: Account, value: str, state: str,
             ok: Callable[[], Reply]) -> Reply:
        """Check a PIN: ``ok()`` if right; else re-prompt, or lock after the last attempt."""
        lang = account.language
        if check_pin(value, account.pin_hash):
            self.accounts.pin_ok(account.phone)
            return ok()
        after = self.accounts.pin_failed(account.phone)
        if after is None or after.status == LOCKED:
            return Reply("", text("locked", lang), end=True)
        left = max(MAX_PIN_ATTEMPTS - after.failed_attempts, 0)
        return Reply(state, text("wrong_pin", lang, left=left))

    # -- main menu ---------------------------------------------------------------------------
    def _main(self, s: Session, account: Account, value: str) -> Reply:
        lang, choice = account.language, value.strip()
        if choice == "1":
            return Reply("balance_pin", text("enter_pin", lang))
        if choice == "2":
            return Reply("send_to", text("send_to", lang))
        if choice == "3":
            return Reply("account", text("account", lang))
        if choice == "4":
            return Reply("", text("goodbye", lang), end=True)
        return Reply("main", f"{text('invalid_choice', lang)}\n{text('main', lang)}")

    def _balance_pin(self, s: Session, account: Account, value: str) -> Reply:
        def show() -> Reply:
            units, decimals, symbol = self.wallet.balance(str(account.address))
            return Reply("", text("balance", account.language,
                                  amount=format_amount(units, decimals), symbol=symbol),
                         end=True)
        return self._pin(s, account, value, "balance_pin", show)

    def _send_to(self, s: Session, account: Account, value: str) -> Reply:
        lang = account.language
        phone = normal_phone(value)
        if phone is None:
            return Reply("send_to", f"{text('invalid_phone', lang)}\n{text('send_to', lang)}")
        other = self.accounts.get(phone)
        if other is None or other.status != ACTIVE or not other.address or phone == s.phone:
            return Reply("send_to", f"{text('unknown_recipient', lang, phone=phone)}\n"
                                    f"{text('send_to', lang)}")
        s.data.update(to=phone, to_address=other.address)
        return Reply("send_amount", text("send_amount", lang))

    def _send_amount(self, s: Session, account: Account, value: str) -> Reply:
        lang = account.language
        units, decimals, symbol = self.wallet.balance(str(account.address))
        amount = parse_amount(value, decimals)
        if amount is None:
            return Reply("send_amount", f"{text('invalid_amount', lang)}\n"
                                        f"{text('send_amount', lang)}")
        if amount > units:
            return Reply("send_amount", f"{text('low_balance', lang)}\n"
                                        f"{text('send_amount', lang)}")
        s.data.update(amount=amount, shown=format_amount(amount, decimals), symbol=symbol)
        return Reply("send_pin", text("send_confirm", lang, amount=s.data["shown"],
                                      symbol=symbol, phone=s.data["to"]))

    def _send_pin(self, s: Session, account: Account, value: str) -> Reply:
        def send() -> Reply:
            d = s.data
            self.wallet.transfer(str(account.address), d["to_address"], int(d["amount"]),
                                 request_id=f"ussd-send:{s.data.get('sid', '')}")
            return Reply("", text("sent", account.language, amount=d["shown"],
                                  symbol=d["symbol"], phone=d["to"]), end=True)
        return self._pin(s, account, value, "send_pin", send)

    # -- my account --------------------------------------------------------------------------
    def _account(self, s: Session, account: Account, value: str) -> Reply:
        lang, choice = account.language, value.strip()
        if choice == "1":
            return Reply("profile_pin", text("enter_pin", lang))
        if choice == "2":
            return Reply("old_pin", text("old_pin", lang))
        if choice == "3":
            return Reply("language", text("choose_language", lang))
        if choice == "0":
            return Reply("main", text("main", lang))
        return Reply("account", f"{text('invalid_choice', lang)}\n{text('account', lang)}")

    def _profile_pin(self, s: Session, account: Account, value: str) -> Reply:
        lang = account.language
        return self._pin(s, account, value, "profile_pin", lambda: Reply("", text(
            "profile", lang, given=account.given_name, family=account.family_name,
            gender=text(account.gender, lang) if account.gender in GENDERS.values() else "",
            location=account.location), end=True))

    def _old_pin(self, s: Session, account: Account, value: str) -> Reply:
        return self._pin(s, account, value, "old_pin",
                         lambda: Reply("reset_pin", text("new_pin", account.language)))

    def _reset_pin(self, s: Session, account: Account, value: str) -> Reply:
        lang = account.language
        if not PIN_RE.fullmatch(value):
            return Reply("reset_pin", f"{text('invalid_pin', lang)}\n{text('new_pin', lang)}")
        s.data["pin_hash"] = hash_pin(value, self.pin_rounds)
        return Reply("reset_pin2", text("confirm_pin", lang))

    def _reset_pin2(self, s: Session, account: Account, value: str) -> Reply:
        lang = account.language
        if not check_pin(value, s.data.get("pin_hash")):
            s.data.pop("pin_hash", None)
            return Reply("reset_pin", f"{text('pin_mismatch', lang)}\n{text('new_pin', lang)}")
        self.accounts.set_pin(account.phone, s.data.pop("pin_hash"))
        return Reply("", text("pin_changed", lang), end=True)

    def _language(self, s: Session, account: Account, value: str) -> Reply:
        lang = LANGUAGE_CHOICE.get(value.strip())
        if lang is None:
            return Reply("language", f"{text('invalid_choice', account.language)}\n"
                                     f"{text('choose_language', account.language)}")
        self.accounts.set_language(account.phone, lang)
        return Reply("", text("language_set", lang), end=True)
