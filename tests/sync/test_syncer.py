"""The syncer on a real anvil devnet: what it pays, read back from the chain's own logs.

Each test makes a fresh devnet (``--no-mining``: the clients mine), a small data directory,
registers the users itself (``AccountsIndex.add`` from the devnet's signer, in blocks it
chooses) and runs the syncer (``run_sync``, as ``cic-seed sync`` does). Every payment is then
checked on chain: one token Transfer per payment (Mint too with ``--mint``), the gas gift as the
exact native balance, and one confirmed ledger row per payment; the signer's nonce shows how
many transactions were sent in all.

The fault paths (reorgs, a dropped transaction, a node refusing wide log queries) are in
``test_syncer_faults.py``.
"""

from __future__ import annotations

from pathlib import Path

from cic_devnet.devnet import Devnet
from cic_seeding.chain.registry import ADDRESS_ADDED, TOKEN
from cic_seeding.chain.registry import FAUCET as FAUCET_ABI
from cic_seeding.importers.eth import EthImporter
from cic_seeding.state import FAUCET, FUND, GAS
from cic_seeding.sync.chain import RegistryChain
from cic_seeding.verify import VerifyOptions, run_verify
from tests.e2e.chain_check import read_ledger
from tests.e2e.ledger import deploy_accounts_index
from tests.sync.world import (
    assert_paid_once,
    confirmed,
    following,
    holdings_match,
    make_world,
)


def test_every_payment_kind_paid_once_per_user(devnet: Devnet, tmp_path: Path) -> None:
    world = make_world(devnet, tmp_path, 20, seed=501)
    world.begin()
    world.register(world.users[:8])
    world.mine(3)  # empty blocks between registrations
    world.register(world.users[8:])
    nonce = world.nonce()

    result = world.sync()

    assert result.ok and result.done == 20 and result.failed == 0, result.render_text()
    assert result.payments == {FUND: {"confirmed": 20}, FAUCET: {"confirmed": 20},
                               GAS: {"confirmed": 20}}
    assert world.faucet_amount == 5 * 10**6 and world.settings.gas_gift == 10**16
    assert_paid_once(world, world.users)
    assert world.nonce() - nonce == 60, "transactions the syncer sent"
    # and as the end-to-end suite's reader sees it
    ledger = read_ledger(world.settings)
    assert ledger.wrong_balances() == {} and all(ledger.faucet_used.values())
    assert set(ledger.native.values()) == {world.settings.gas_gift}
    assert world.cursor().next_block == world.head() + 1  # type: ignore[union-attr]


def test_mint_pays_opening_balances_as_mints(devnet: Devnet, tmp_path: Path) -> None:
    world = make_world(devnet, tmp_path, 15, seed=502, mint=True)
    token = world.token
    supply, held = world.client.call_many([
        (token, TOKEN.fn("totalSupply"), ()), (token, TOKEN.fn("balanceOf"), (world.signer,))])
    world.begin()
    world.register(world.users)

    result = world.sync()

    assert result.ok and result.done == 15, result.render_text()
    assert_paid_once(world, world.users)  # Transfer from 0x0 and Mint(signer, user) each
    supply_after, held_after = world.client.call_many([
        (token, TOKEN.fn("totalSupply"), ()), (token, TOKEN.fn("balanceOf"), (world.signer,))])
    assert supply_after - supply == sum(world.opening.values())
    assert held_after == held, "the signer's own tokens paid an opening balance"


def test_no_faucet_payout_and_no_gas_gift(devnet_without_faucet: Devnet,
                                          tmp_path: Path) -> None:
    """A devnet whose faucet pays 0 and gas gift 0: opening balances only; a user whose
    opening balance is 0 as well is owed nothing and never enters the ledger."""
    world = make_world(devnet_without_faucet, tmp_path, 12, seed=503, gas_gift=0)
    assert world.faucet_amount == 0
    nothing = world.users[5]
    balances = Path(world.settings.data_dir) / "balances.csv"
    balances.write_text("".join(
        f"{a},{0 if '0x' + a == nothing else v}\n"
        for a, v in (line.split(",") for line in balances.read_text().splitlines())))
    world.opening[nothing] = 0
    world.begin()
    world.register(world.users)
    nonce = world.nonce()

    result = world.sync()

    assert result.ok and result.done == 12, result.render_text()
    assert result.payments == {FUND: {"confirmed": 11}}
    owed = [u for u in world.users if u != nothing]
    assert_paid_once(world, owed, unpaid=[nothing])
    assert world.nonce() - nonce == 11
    used = world.client.call_many([(world.faucet, FAUCET_ABI.fn("nextTime"), (u,))
                                   for u in world.users])
    assert set(used) == {0}, "the faucet paid someone"


def test_the_gate_counts_no_gas_gift_and_no_faucet_payout_as_not_applicable(
        devnet_without_faucet: Devnet, tmp_path: Path) -> None:
    world = make_world(devnet_without_faucet, tmp_path, 6, seed=505, gas_gift=0)
    importer = EthImporter(world.settings)
    try:
        assert importer.run().ok
    finally:
        importer.close()
    assert world.sync().ok
    checks = run_verify(world.settings, VerifyOptions(
        importer="eth", include=("gas", "faucet", "balance"))).checks
    assert {c: (r.ok, r.not_applicable, r.failed) for c, r in checks.items()} == {
        "gas": (0, 6, 0), "faucet": (0, 6, 0), "balance": (6, 0, 0)}


def test_rescan_after_rewinding_the_cursor_pays_nothing_twice(devnet: Devnet,
                                                              tmp_path: Path) -> None:
    world = make_world(devnet, tmp_path, 12, seed=504)
    start = world.begin()
    world.register(world.users[:6])
    world.register(world.users[6:])
    assert world.sync().ok
    assert_paid_once(world, world.users)
    nonce, ledger = world.nonce(), world.ledger()

    # the cursor back to where it began, through the state store
    with world.store() as store:
        store.rewind_cursor("eth", world.chain_key, start)
        assert store.cursor("eth", world.chain_key).next_block == start  # type: ignore[union-attr]
    again = world.sync()
    assert again.ok and again.done == 12 and again.reorgs == 0, again.render_text()
    # and from block 0 (the option rewinds it too)
    zero = world.sync(from_block=0)
    assert zero.ok and zero.first_block == 0, zero.render_text()

    assert world.nonce() == nonce, "a rescan sent transactions"
    assert world.ledger() == ledger
    assert_paid_once(world, world.users)
    assert world.cursor().next_block == world.head() + 1  # type: ignore[union-attr]


def test_confirmations_hold_registrations_back_until_buried(devnet: Devnet,
                                                           tmp_path: Path) -> None:
    world = make_world(devnet, tmp_path, 10, seed=505)
    start = world.begin()
    block = world.register(world.users)
    assert block == start + 1
    nonce = world.nonce()

    # one round each (timeout 0): nothing is read above head - 3, so nothing is planned
    # until 3 blocks are on top of the registrations
    for on_top in range(3):
        assert world.head() == block + on_top
        result = world.sync(confirmations=3, timeout=0)
        assert result.timed_out and result.done == 0 and result.waiting == 10, \
            result.render_text()
        assert world.ledger() == []
        assert world.cursor().next_block == max(start, block + on_top - 2)  # type: ignore
        world.mine()
    assert world.nonce() == nonce

    assert world.head() == block + 3
    result = world.sync(confirmations=3)
    assert result.ok and result.done == 10, result.render_text()
    assert_paid_once(world, world.users)
    assert world.nonce() - nonce == 30
    # the cursor stays 3 blocks behind the head (the payments' blocks included)
    assert world.cursor().next_block == world.head() - 3 + 1  # type: ignore[union-attr]


def test_follow_mode_pays_users_registered_while_it_runs(devnet: Devnet,
                                                         tmp_path: Path) -> None:
    world = make_world(devnet, tmp_path, 30, seed=506)
    world.begin()
    world.register(world.users[:10])
    nonce = world.nonce()
    with following(world, poll=0.05) as syncer:
        syncer.wait(lambda: holdings_match(world, world.users[:10]),
                    what="the first 10 users' payments on chain")
        world.register(world.users[10:20])
        world.mine(2)
        world.register(world.users[20:])
        syncer.wait(lambda: holdings_match(world, world.users),
                    what="all 30 users' payments on chain")
        syncer.wait(lambda: confirmed(world, world.users),
                    what="all 30 users' payments confirmed in the ledger")
        result = syncer.stop()
    assert result.stopped and not result.timed_out, result.render_text()
    assert result.ok and result.done == 30 and result.waiting == 0, result.render_text()
    assert_paid_once(world, world.users)
    assert world.nonce() - nonce == 20 + 90  # 20 registrations made while it ran


def test_registrations_elsewhere_trigger_nothing(devnet: Devnet, tmp_path: Path) -> None:
    """add()s on another AccountsIndex (of data directory users), and add()s of addresses not
    in the data directory on the registry's own index: nothing is paid for them."""
    world = make_world(devnet, tmp_path, 12, seed=507)
    ours, outsiders = world.users[:10], world.users[10:]
    strangers = [f"0x{0xabc000 + i:040x}" for i in range(4)]
    other = deploy_accounts_index(world.network)
    world.begin()
    world.register([strangers[0], *ours[:5], strangers[1]])  # in one block with ours
    world.register([outsiders[0]], index=other)
    world.register(ours[5:])
    nonce = world.nonce()
    with following(world, poll=0.05) as syncer:
        syncer.wait(lambda: confirmed(world, ours), what="our 10 users' payments confirmed")
        world.register([outsiders[1]], index=other)
        late = world.register(strangers[2:])
        syncer.wait(lambda: world.cursor().next_block > late,  # type: ignore[union-attr]
                    what="the syncer's cursor past the strangers' block")
        result = syncer.stop()
    assert result.done == 10 and result.waiting == 2 and result.failed == 0, \
        result.render_text()
    assert world.nonce() - nonce == 30 + 3  # our payments, and the test's own three adds
    assert_paid_once(world, ours, unpaid=[*outsiders, *strangers])


def test_registering_transactions_forgotten_past_the_bound_are_read_again(
        devnet: Devnet, tmp_path: Path) -> None:
    """The chain view remembers registering transactions only up to its bound (a syncer
    following a busy network reads everybody's registrations); one asked for after it was
    forgotten is read again from its block, so what was prepaid is never taken for unpaid."""
    world = make_world(devnet, tmp_path, 6, seed=509, batch_funder="devnet")
    start = world.begin()
    importer = EthImporter(world.settings)
    try:
        imported = importer.run(limit=3)  # registerAndFund: opening balances paid
    finally:
        importer.close()
    assert imported.ok and imported.confirmed == 3, imported.render_text()
    world.register(world.users[3:])  # plain add()s: nothing paid
    logged = {"0x" + str(e["data"])[-40:].lower(): str(e["transactionHash"])
              for e in world.client.logs(world.network.accounts_index, ADDRESS_ADDED,
                                         start, world.head())}
    chain = RegistryChain(world.network, world.chain_key, keep=2)
    items = chain.registrations(start, world.head())
    assert sorted(a for _, a in items) == sorted(logged) == sorted(world.users)
    empty = world.mine()
    assert chain.registrations(empty, empty) == []
    assert len(chain._tx_of) <= 2  # the six read before are forgotten

    assert chain.registering_txs(items) == logged
    prepaid = chain.prepaid(items)
    assert {a: h for a, (_, h, _) in prepaid.items()} == {u: logged[u] for u in world.users[:3]}
    assert all(amount > 0 for _, _, amount in prepaid.values())


def test_batch_funder_path_pays_once_and_never_pays_a_prepaid_balance(
        devnet: Devnet, tmp_path: Path) -> None:
    """``batch_funder``: half the users registered by the importer's BatchFunder path (their
    opening balances paid by the registering transaction), half by plain add()s. The syncer
    pays the plain half's balances one transfer each, never the prepaid ones, and every
    faucet payout and gas gift many users per transaction."""
    world = make_world(devnet, tmp_path, 20, seed=508, batch_funder="devnet")
    funder = str(devnet.info["contracts"]["BatchFunder"]).lower()
    start = world.begin()
    importer = EthImporter(world.settings)
    try:
        imported = importer.run(limit=10)
    finally:
        importer.close()
    assert imported.ok and imported.confirmed == 10, imported.render_text()
    prepaid, plain = world.users[:10], world.users[10:]
    registering = {"0x" + str(e["data"])[-40:].lower(): str(e["transactionHash"])
                   for e in world.client.logs(world.network.accounts_index, ADDRESS_ADDED,
                                              start, world.head())}
    assert set(registering) == set(prepaid)
    world.register(plain)

    result = world.sync()

    assert result.ok and result.done == 20, result.render_text()
    assert_paid_once(world, world.users)
    ledger = {(p.address, p.kind): p for p in world.ledger()}
    # prepaid: confirmed from the registering transaction, nothing of ours to resend
    assert {u: (ledger[(u, FUND)].tx_hash, ledger[(u, FUND)].raw_tx) for u in prepaid} == \
        {u: (registering[u], "") for u in prepaid}
    assert len({ledger[(u, FUND)].tx_hash for u in plain}) == 10  # a transfer each
    for kind in (FAUCET, GAS):  # one BatchFunder transaction for all 20
        (tx_hash,) = {ledger[(u, kind)].tx_hash for u in world.users}
        tx = world.client.rpc.call("eth_getTransactionByHash", [tx_hash])
        assert str(tx["to"]).lower() == funder, kind
