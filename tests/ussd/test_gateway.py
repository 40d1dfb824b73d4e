"""The gateway process against its real stores: registration, main menu, PINs, languages."""

from __future__ import annotations

import requests

from cic_seeding.ussd.accounts import ACTIVE, LOCKED, PENDING
from cic_seeding.ussd.texts import text
from tests.ussd.world import Stack, register, wait_for


def _active(stack: Stack, phone: str, **kw: str) -> str:
    with stack.client() as client:
        screens = register(client, phone, **kw)
    assert screens[-1].end, screens
    address = stack.address_of(phone)
    wait_for(lambda: stack.sql("SELECT status FROM ussd_accounts WHERE phone = %s",
                               (phone,)) == [(ACTIVE,)], timeout=30, what="active account")
    return address


def test_english_registration_creates_the_account_and_its_documents(stack: Stack) -> None:
    phone = stack.new_phone()
    with stack.client() as client:
        screens = register(client, phone, pin="4821")
        assert [s.end for s in screens] == [False] * 7 + [True]
        assert screens[0].text == text("choose_language")
        assert screens[-1].text == text("registered")
        again = client.session(phone, [])
        assert again[0].end and again[0].text in (text("pending"), text("main"))
    (row,) = stack.sql("SELECT status, language, pin_hash, given_name, family_name, gender, "
                       "location FROM ussd_accounts WHERE phone = %s", (phone,))
    assert row[0] in (PENDING, ACTIVE) and row[1] == "en"
    assert row[2].startswith("$2") and "4821" not in row[2]  # bcrypt only
    assert row[3:] == ("Amina", "Otieno", "female", "Kibera")
    address = stack.address_of(phone)
    from cic_seeding.meta.client import MetaClient
    from cic_seeding.records.pointers import person_pointer, preferences_pointer
    from cic_seeding.records.vcard import decode_vcard

    with MetaClient(stack.meta.url) as meta:
        person = meta.get(person_pointer(address))
        assert isinstance(person, dict)
        card = decode_vcard(person["vcard"])
        assert (card.given, card.family, card.phone) == ("Amina", "Otieno", phone)
        assert person["gender"] == "female" and person["location"]["area_name"] == "Kibera"
        assert meta.get(preferences_pointer(address)) == {"preferred_language": "en"}
    wait_for(lambda: stack.sql("SELECT status, address FROM ussd_accounts WHERE phone = %s",
                               (phone,)) == [(ACTIVE, address.lower())],
             timeout=30, what="active account")
    with stack.client() as client:
        menu = client.session(phone, ["1", "4821"])
    assert menu[0] == menu[0].__class__(False, text("main"))
    assert menu[-1].end and menu[-1].text.startswith("Your balance is 0 ")


def test_swahili_registration_reprompts_invalid_input(stack: Stack) -> None:
    phone = stack.new_phone()
    steps = ["9", "2", "", "Wanjiru", "K9", "Kamau", "7", "3", "@@", "Nyeri", "12a", "5555",
             "5556", "5555", "5555"]
    with stack.client() as client:
        screens = client.session(phone, steps)
    sw = [s.text for s in screens]
    assert sw[1].startswith(text("invalid_choice")) and sw[2] == text("given_name", "sw")
    assert sw[3].startswith(text("invalid_name", "sw"))
    assert sw[5].startswith(text("invalid_name", "sw"))  # a digit in a name
    assert sw[-2] == text("confirm_pin", "sw")
    assert screens[-1].end and sw[-1] == text("registered", "sw")
    assert not any(s.end for s in screens[:-1])
    (row,) = stack.sql("SELECT language, given_name, family_name, gender, location "
                       "FROM ussd_accounts WHERE phone = %s", (phone,))
    assert row == ("sw", "Wanjiru", "Kamau", "other", "Nyeri")
    stack.address_of(phone)
    wait_for(lambda: stack.sql("SELECT status FROM ussd_accounts WHERE phone = %s",
                               (phone,)) == [(ACTIVE,)], timeout=30, what="active account")
    with stack.client() as client:
        assert client.session(phone, [])[0].text == text("main", "sw")


def test_three_wrong_pins_lock_the_account(stack: Stack) -> None:
    phone = stack.new_phone()
    _active(stack, phone, pin="2468")
    with stack.client() as client:
        first = client.session(phone, ["1", "0000", "1111"])
        assert not first[-1].end and first[-1].text.startswith("Incorrect PIN. You have 1")
        locked = client.session(phone, ["1", "9999"])
        assert locked[-1].end and locked[-1].text == text("locked")
        assert client.session(phone, [])[0] == locked[-1]  # the right PIN no longer helps
        assert client.session(phone, ["1", "2468"])[-1].text == text("locked")
    assert stack.sql("SELECT status, failed_attempts FROM ussd_accounts WHERE phone = %s",
                     (phone,)) == [(LOCKED, 3)]


def test_a_right_pin_resets_the_failed_attempts(stack: Stack) -> None:
    phone = stack.new_phone()
    _active(stack, phone, pin="1357")
    with stack.client() as client:
        for _ in range(3):
            screens = client.session(phone, ["1", "0000", "1357"])
            assert screens[-1].text.startswith("Your balance is")
    assert stack.sql("SELECT status, failed_attempts FROM ussd_accounts WHERE phone = %s",
                     (phone,)) == [(ACTIVE, 0)]


def test_my_account_profile_pin_change_and_language(stack: Stack) -> None:
    phone = stack.new_phone()
    _active(stack, phone, given="Juma", family="Mwangi", gender="1", location="Mombasa",
            pin="1111")
    with stack.client() as client:
        profile = client.session(phone, ["3", "1", "1111"])
        assert profile[-1].end
        assert profile[-1].text == "Name: Juma Mwangi\nGender: Male\nLocation: Mombasa"
        changed = client.session(phone, ["3", "2", "1111", "2222", "2223", "2222", "2222"])
        assert changed[5].text.startswith(text("pin_mismatch"))
        assert changed[-1].end and changed[-1].text == text("pin_changed")
        assert client.session(phone, ["1", "2222"])[-1].text.startswith("Your balance")
        lang = client.session(phone, ["3", "3", "2"])
        assert lang[-1].text == text("language_set", "sw")
        assert client.session(phone, ["0"])[0].text == text("main", "sw")
        back = client.session(phone, ["3", "0", "x", "4"])
        assert back[2].text == text("main", "sw") and back[3].text.startswith(
            text("invalid_choice", "sw"))
        assert back[-1].end and back[-1].text == text("goodbye", "sw")


def test_a_repeated_request_gets_the_same_reply(stack: Stack) -> None:
    phone = stack.new_phone()
    with stack.client() as client:
        first = client.request("s-" + phone, phone, "")
        second = client.request("s-" + phone, phone, "1")
        assert client.request("s-" + phone, phone, "1") == second
        assert client.request("s-" + phone, phone, "") == second  # fewer inputs: no step back
        assert first.text == text("choose_language")


def test_malformed_requests_and_unknown_service_codes_are_refused(stack: Stack) -> None:
    url = stack.gateway.url
    ok = {"sessionId": "x1", "serviceCode": stack.gateway.service_code,
          "phoneNumber": stack.new_phone(), "text": ""}
    for broken in ({**ok, "serviceCode": "*999#"}, {**ok, "phoneNumber": "0700"},
                   {k: v for k, v in ok.items() if k != "sessionId"}):
        response = requests.post(url, data=broken, timeout=10)
        assert response.status_code == 400 and response.text.startswith("END "), broken
    assert "Unknown service code" in requests.post(
        url, data={**ok, "serviceCode": "*999#"}, timeout=10).text
    assert requests.post(url, data="garbage", timeout=10).status_code == 400
    assert requests.get(url + "/_health", timeout=10).status_code == 200
