"""The gateway's screens in English and Swahili, shared by the gateway and the checks.

A screen is a template (``str.format`` fields); :func:`text` picks the language, falling back
to English. The checks recognise the main menu and the balance screen by these texts.
"""

from __future__ import annotations

LANGUAGES = ("en", "sw")

_TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "choose_language": "Welcome to Sarafu Network\n1. English\n2. Kiswahili",
        "given_name": "Enter your first name",
        "family_name": "Enter your family name",
        "gender": "Select gender\n1. Male\n2. Female\n3. Other",
        "location": "Enter your location",
        "new_pin": "Please enter a new four number PIN for your account",
        "confirm_pin": "Enter your four number PIN again",
        "registered": "Your account is being created. You will receive an SMS when it is ready.",
        "pending": "Your account is still being created. Please try again shortly.",
        "locked": "Your account is locked after too many wrong PINs. Call support to reset it.",
        "main": "Main menu\n1. My balance\n2. Send\n3. My account\n4. Exit",
        "enter_pin": "Please enter your PIN",
        "wrong_pin": "Incorrect PIN. You have {left} attempt(s) left.\nPlease enter your PIN",
        "balance": "Your balance is {amount} {symbol}",
        "send_to": "Enter the recipient's phone number",
        "send_amount": "Enter the amount",
        "send_confirm": "Send {amount} {symbol} to {phone}?\nEnter your PIN to confirm",
        "sent": "Your request to send {amount} {symbol} to {phone} has been sent.",
        "account": "My account\n1. My profile\n2. Change PIN\n3. Language\n0. Back",
        "profile": "Name: {given} {family}\nGender: {gender}\nLocation: {location}",
        "old_pin": "Enter your current PIN",
        "pin_changed": "Your PIN has been changed.",
        "language_set": "Your language is now English.",
        "goodbye": "Thank you for using Sarafu.",
        "unavailable": "The service is not available right now. Please try again later.",
        "invalid_choice": "Invalid choice.",
        "invalid_name": "Invalid name: use letters only (at most 40).",
        "invalid_location": "Invalid location: use at most 40 letters or digits.",
        "invalid_pin": "Invalid PIN: a PIN is exactly four digits.",
        "pin_mismatch": "The PINs do not match.",
        "invalid_phone": "Invalid phone number.",
        "unknown_recipient": "No account has the phone number {phone}.",
        "invalid_amount": "Invalid amount.",
        "low_balance": "Your balance is too low.",
        "male": "Male", "female": "Female", "other": "Other",
    },
    "sw": {
        "choose_language": "Karibu Sarafu Network\n1. English\n2. Kiswahili",
        "given_name": "Weka jina lako la kwanza",
        "family_name": "Weka jina lako la mwisho",
        "gender": "Chagua jinsia\n1. Mwanaume\n2. Mwanamke\n3. Nyingine",
        "location": "Weka eneo lako",
        "new_pin": "Tafadhali weka PIN mpya yenye nambari nne",
        "confirm_pin": "Weka PIN yako tena",
        "registered": "Akaunti yako inafunguliwa. Utapokea SMS ikiwa tayari.",
        "pending": "Akaunti yako bado inafunguliwa. Tafadhali jaribu tena baadaye.",
        "locked": "Akaunti yako imefungwa kwa PIN zisizo sahihi. Piga simu kwa msaada.",
        "main": "Menyu kuu\n1. Salio langu\n2. Tuma\n3. Akaunti yangu\n4. Ondoka",
        "enter_pin": "Tafadhali weka PIN yako",
        "wrong_pin": "PIN si sahihi. Umebakisha majaribio {left}.\nTafadhali weka PIN yako",
        "balance": "Salio lako ni {amount} {symbol}",
        "send_to": "Weka nambari ya simu ya mpokeaji",
        "send_amount": "Weka kiasi",
        "send_confirm": "Tuma {amount} {symbol} kwa {phone}?\nWeka PIN yako kuthibitisha",
        "sent": "Ombi lako la kutuma {amount} {symbol} kwa {phone} limetumwa.",
        "account": "Akaunti yangu\n1. Wasifu wangu\n2. Badilisha PIN\n3. Lugha\n0. Rudi",
        "profile": "Jina: {given} {family}\nJinsia: {gender}\nEneo: {location}",
        "old_pin": "Weka PIN yako ya sasa",
        "pin_changed": "PIN yako imebadilishwa.",
        "language_set": "Lugha yako sasa ni Kiswahili.",
        "goodbye": "Asante kwa kutumia Sarafu.",
        "unavailable": "Huduma haipatikani kwa sasa. Tafadhali jaribu tena baadaye.",
        "invalid_choice": "Chaguo si sahihi.",
        "invalid_name": "Jina si sahihi: tumia herufi pekee (hadi 40).",
        "invalid_location": "Eneo si sahihi: tumia hadi herufi au nambari 40.",
        "invalid_pin": "PIN si sahihi: PIN ni nambari nne.",
        "pin_mismatch": "PIN hazilingani.",
        "invalid_phone": "Nambari ya simu si sahihi.",
        "unknown_recipient": "Hakuna akaunti yenye nambari {phone}.",
        "invalid_amount": "Kiasi si sahihi.",
        "low_balance": "Salio lako halitoshi.",
        "male": "Mwanaume", "female": "Mwanamke", "other": "Nyingine",
    },
}


def text(key: str, language: str = "en", **fields: object) -> str:
    """The screen ``key`` in ``language`` (English if unknown), its fields filled in."""
    table = _TEXTS.get(language, _TEXTS["en"])
    return table.get(key, _TEXTS["en"][key]).format(**fields)


def main_menus() -> set[str]:
    """The main menu in every language (how a check recognises it)."""
    return {_TEXTS[lang]["main"] for lang in LANGUAGES}


def balance_prefixes() -> tuple[str, ...]:
    """How the balance screen begins in every language."""
    return tuple(_TEXTS[lang]["balance"].split("{", 1)[0] for lang in LANGUAGES)


def is_locked(screen: str) -> bool:
    """Whether ``screen`` is the gateway's "account locked" message (any language)."""
    return screen in {_TEXTS[lang]["locked"] for lang in LANGUAGES}
