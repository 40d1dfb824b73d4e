"""The cic_ussd pipeline against real processes: register over USSD, sync, verify."""

from __future__ import annotations

import json
from pathlib import Path

from eth_utils import to_checksum_address

from cic_seeding.chain.connect import connect
from cic_seeding.chain.registry import TOKEN
from cic_seeding.config import Settings
from cic_seeding.datadir import DataDir
from cic_seeding.generate.keys import preferred_language
from cic_seeding.importers.base import ImportResult
from cic_seeding.importers.cic_ussd import CicUssdImporter
from cic_seeding.importers.meta import MetaImporter
from cic_seeding.meta.client import MetaClient
from cic_seeding.records.chainspec import ChainSpec
from cic_seeding.records.person import identity_addresses
from cic_seeding.records.pointers import preferences_pointer
from cic_seeding.state import open_state_store
from cic_seeding.sync.run import run_sync
from cic_seeding.sync.syncer import SyncOptions
from cic_seeding.verify import VerifyOptions, run_verify
from tests.custodial.world import assert_users_txs_archived, make_data
from tests.ussd.world import Stack

USERS = 100


def run_import(settings: Settings) -> ImportResult:
    importer = CicUssdImporter(settings)
    try:
        return importer.run()
    finally:
        importer.close()


def balances(settings: Settings, targets: list[str]) -> list[int]:
    network = connect(settings, signer=False)
    token = network.token()
    return list(network.client.call_many([(token.address, TOKEN.fn("balanceOf"), (t,))
                                          for t in targets]))


def test_users_registered_over_ussd_are_synced_and_pass_every_check(stack: Stack,
                                                                    tmp_path: Path) -> None:
    data_dir = make_data(tmp_path, USERS, seed=808)
    settings = stack.settings(data_dir, batch_size=50)
    result = run_import(settings)
    assert result.ok and result.confirmed == USERS, result.render_text()

    data = DataDir(data_dir)
    seed = data.manifest().seed
    rows = stack.sql("SELECT phone, language, status FROM ussd_accounts")
    phones = {u.phone: u.index for u in data.users()}
    assert len(rows) == USERS and {r[0] for r in rows} == set(phones)
    assert all(lang == preferred_language(seed, phones[p]) for p, lang, _ in rows)
    assert {lang for _, lang, _ in rows} == {"en", "sw"}

    chain = ChainSpec.parse(settings.chain_spec)
    with open_state_store(settings) as store:
        targets = store.targets("cic_ussd")
    assert len(targets) == USERS and all(t != a for t, a in targets.items())
    for target, user in list(targets.items())[:5]:
        ids = [a.lower() for a in identity_addresses(json.loads(data.new.get(target)), chain)]
        assert target in ids and user in ids

    sync = run_sync(settings, "cic_ussd", SyncOptions(timeout=120, poll=0.1))
    assert sync.ok and sync.done == USERS, sync.render_text()
    # tx/: the registrations the gateway had the engine sign, and the payments (ours)
    archived = assert_users_txs_archived(settings, "cic_ussd")
    assert archived["register"] == USERS and archived["fund"] == sum(
        1 for b in data.balances().values() if b > 0)
    meta = MetaImporter(settings)  # the full person documents, tags and preferences
    try:
        assert meta.run().ok
    finally:
        meta.close()

    verify = run_verify(settings, VerifyOptions(importer="cic_ussd"))
    assert verify.ok, verify.render_text()
    for check in ("imported", "accounts_index", "balance", "faucet", "gas", "custodial_key",
                  "metadata_phone", "ussd", "ussd_pins"):
        assert verify.checks[check].ok == USERS, verify.checks[check].line()

    # a rerun registers nothing and pays nothing again
    paid = balances(settings, list(targets))
    again = run_import(settings)
    assert again.ok and again.done_before == USERS and again.submitted == 0
    assert run_sync(settings, "cic_ussd", SyncOptions(timeout=30, poll=0.1)).ok
    assert balances(settings, list(targets)) == paid
    assert stack.sql("SELECT count(*) FROM ussd_accounts") == [(USERS,)]

    # send: A pays B one token over USSD, confirmed with A's PIN
    _send_one_token(stack, settings, data, targets)


def _send_one_token(stack: Stack, settings: Settings, data: DataDir,
                    targets: dict[str, str]) -> None:
    from cic_seeding.ussd.pins import seeded_pin
    from cic_seeding.ussd.texts import text
    from tests.ussd.world import wait_for

    seed = data.manifest().seed
    users = list(data.users())
    target_of = {a: t for t, a in targets.items()}
    a, b = users[0], users[1]
    ta, tb = target_of[a.address.lower()], target_of[b.address.lower()]
    lang = preferred_language(seed, a.index)
    decimals = connect(settings, signer=False).token().decimals
    before = balances(settings, [ta, tb])
    too_much = str(before[0] // 10**decimals + 10)
    with stack.client() as client:
        screens = client.session(a.phone, ["2", "12", "+254799999999", b.phone, "x", too_much,
                                           "1", seeded_pin(seed, a.index)])
    assert screens[2].text.startswith(text("invalid_phone", lang))
    assert screens[3].text.startswith(text("unknown_recipient", lang, phone="+254799999999"))
    assert screens[5].text.startswith(text("invalid_amount", lang))
    assert screens[6].text.startswith(text("low_balance", lang))
    assert screens[-1].end and b.phone in screens[-1].text, screens[-1]
    unit = 10**decimals
    wait_for(lambda: balances(settings, [ta, tb]) == [before[0] - unit, before[1] + unit],
             timeout=60, what="the USSD transfer on chain")


def test_one_language_per_user_for_ussd_metadata_and_the_verifier(stack: Stack,
                                                                  tmp_path: Path) -> None:
    """USSD registration answers the language menu with preferred_language(seed, index), the
    gateway writes it into the preferences document, the cic_meta import writes the same, the
    verifier expects it in both; the other language fails the user that has it, only."""
    data_dir = make_data(tmp_path, 10, seed=909)
    settings = stack.settings(data_dir, batch_size=10)
    assert run_import(settings).ok
    data = DataDir(data_dir)
    seed, users = data.manifest().seed, list(data.users())
    wanted = {u.phone: preferred_language(seed, u.index) for u in users}
    assert set(wanted.values()) == {"en", "sw"}
    assert dict(stack.sql("SELECT phone, language FROM ussd_accounts WHERE phone = ANY(%s)",
                          (list(wanted),))) == wanted
    with open_state_store(settings) as store:
        target_of = {a: t for t, a in store.targets("cic_ussd").items()}
    with MetaClient(stack.meta.url) as client:  # written by the gateway at registration
        for u in users:
            doc = client.get(preferences_pointer(to_checksum_address(
                target_of[u.address.lower()])))
            assert doc == {"preferred_language": wanted[u.phone]}, u
    meta = MetaImporter(settings)  # writes them again, from the data directory
    try:
        assert meta.run().ok
    finally:
        meta.close()
    checks = ("metadata_preferences", "ussd")
    clean = run_verify(settings, VerifyOptions(importer="cic_ussd", include=checks))
    assert clean.ok and all(clean.checks[c].ok == 10 for c in checks), clean.render_text()

    other = {"en": "sw", "sw": "en"}
    doc_victim, menu_victim = users[2], users[7]
    with MetaClient(stack.meta.url, stack.meta.token) as client:
        client.put(preferences_pointer(to_checksum_address(
            target_of[doc_victim.address.lower()])),
            {"preferred_language": other[wanted[doc_victim.phone]]})
    stack.sql("UPDATE ussd_accounts SET language = %s WHERE phone = %s RETURNING phone",
              (other[wanted[menu_victim.phone]], menu_victim.phone))
    result = run_verify(settings, VerifyOptions(importer="cic_ussd", include=checks))
    (doc_failure,) = result.checks["metadata_preferences"].failures
    assert doc_failure.address == doc_victim.address.lower()
    assert doc_failure.detail == (f"preferred_language {other[wanted[doc_victim.phone]]!r}, "
                                  f"expected {wanted[doc_victim.phone]!r}")
    (menu_failure,) = result.checks["ussd"].failures
    assert menu_failure.address == menu_victim.address.lower()
    assert menu_failure.reason == ("its USSD menus speak another language than the user's "
                                   "preferred one")
    assert menu_failure.detail == (f"{menu_victim.phone}: {other[wanted[menu_victim.phone]]}, "
                                   f"expected {wanted[menu_victim.phone]}")
