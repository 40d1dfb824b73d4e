"""The syncer's fault paths on a real anvil devnet: reorgs that drop the registrations' blocks,
a payment transaction the node loses before mining it, and a node that refuses wide log queries.

See ``test_syncer.py`` for how payments are read back from the chain.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cic_devnet import anvil
from cic_devnet.devnet import Devnet
from cic_seeding.chain.registry import ACCOUNTS_INDEX
from cic_seeding.state import Status
from tests.sync.rpc_proxy import RpcProxy
from tests.sync.world import (
    World,
    assert_paid_once,
    confirmed,
    following,
    make_world,
)


def registered(world: World, users: list[str]) -> set[str]:
    have = world.client.call_many([(world.network.accounts_index, ACCOUNTS_INDEX.fn("have"), (u,))
                                   for u in users])
    return {u for u, h in zip(users, have, strict=True) if h is True}


def rollbacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the syncer logged about reorgs: where it rescans from, what it checks again."""
    return [r.getMessage() for r in caplog.records
            if r.name == "cic_seeding.sync.syncer" and r.getMessage().startswith("reorg:")]


def pay_and_stop(world: World, users: list[str]) -> None:
    """Run the syncer (following the chain) until every payment of ``users`` is confirmed."""
    with following(world, poll=0.02) as syncer:
        syncer.wait(lambda: confirmed(world, users), what="the payments confirmed")
        result = syncer.stop()
    assert result.failed == 0 and result.reorgs == 0, result.render_text()


# -- reorgs ------------------------------------------------------------------------------------
def test_reorg_moving_registrations_rolls_back_and_pays_once(
        devnet: Devnet, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """anvil_reorg replaces the registrations' block and the payments' blocks. The new chain
    holds the same registrations one block later, and one more (a user the old chain never
    registered) in an earlier block than the syncer's stored hashes: the cursor rolls back far
    enough to see it, payments mined in dropped blocks are checked again and re-sent, and
    every user ends paid exactly once."""
    world = make_world(devnet, tmp_path, 11, seed=601)
    first, late = world.users[:10], world.users[10]
    start = world.begin()
    nonce = world.client.pending_nonce()
    registrations = world.sign_registrations(first, first_nonce=nonce)
    assert world.client.broadcast([s.raw for s in registrations]) == [None] * 10  # one block
    world.mine(2)  # two empty blocks after the registrations
    pay_and_stop(world, first)
    assert_paid_once(world, first, unpaid=[late])
    before = {(p.address, p.kind): p for p in world.ledger()}
    assert len(before) == 30 and {p.nonce for p in before.values()} == \
        set(range(nonce + 10, nonce + 40))
    depth = world.head() - start

    # the same registrations one block later, and the late user's in the same new block
    (late_add,) = world.sign_registrations([late], first_nonce=nonce + 10)
    anvil.reorg(devnet.rpc_url, depth,
                [(s.raw, 1) for s in registrations] + [(late_add.raw, 1)])
    assert world.head() == start + depth
    assert registered(world, world.users) == set(world.users)
    assert set(world.balances(world.users).values()) == {0}, "the reorg kept payments"
    assert set(world.native(world.users).values()) == {0}
    caplog.set_level(logging.INFO, logger="cic_seeding.sync.syncer")

    result = world.sync(world.signing_anew_changes_bytes(), timeout=20)

    assert result.ok and result.done == 11 and result.reorgs == 1, result.render_text()
    # the first ranges read were [start, start + 1) and [start + 1, start + 3) (the log
    # reader starts at one block and doubles): the hash of block start + 2, the second's
    # last, is the lowest that changed; the cursor goes back to that range's start
    assert rollbacks(caplog) == [
        f"reorg: stored block hashes from {start + 2} on are gone; rescanning from "
        f"{start + 1}",
        "reorg: 30 payments mined in dropped blocks are checked again"]
    assert_paid_once(world, world.users)
    after = {(p.address, p.kind): p for p in world.ledger()}
    resent = [k for k, p in before.items() if after[k].tx_hash == p.tx_hash]
    # the late user's registration and its 3 payments (planned and sent first in the round
    # that rolled back) took 4 of the old payments' nonces: those 4 were signed again
    assert len(resent) == 26, "payments of dropped blocks re-sent byte for byte"
    # a payment signed again had lost its nonce to another transaction of the new chain
    taken = {nonce + 10} | {p.nonce for k, p in after.items() if k[0] == late}
    assert {before[k].nonce for k in before if k not in resent} <= taken
    assert world.nonce() == nonce + 11 + 33, "transactions on the new chain"


def test_revert_dropping_registrations_rolls_back_and_pays_once(
        devnet: Devnet, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """evm_revert to before the registrations: registrations and payments are gone; the users
    register again (in other blocks) and the syncer pays each exactly once on the new chain."""
    world = make_world(devnet, tmp_path, 12, seed=602)
    start = world.begin()
    snapshot = anvil.snapshot(devnet.rpc_url)
    world.register(world.users[:6])
    world.register(world.users[6:])
    pay_and_stop(world, world.users)
    assert_paid_once(world, world.users)
    paid_at = sorted({p.block_number for p in world.ledger()})

    anvil.revert(devnet.rpc_url, snapshot)
    assert registered(world, world.users) == set()
    world.mine(3)
    world.register(world.users)  # all in one block now, above the old registrations'
    world.mine(len(paid_at))
    caplog.set_level(logging.INFO, logger="cic_seeding.sync.syncer")

    result = world.sync(timeout=20)

    assert result.ok and result.done == 12 and result.reorgs == 1, result.render_text()
    # the second range read, [start + 1, start + 3), ended at the second registration block
    assert rollbacks(caplog) == [
        f"reorg: stored block hashes from {start + 2} on are gone; rescanning from "
        f"{start + 1}",
        "reorg: 36 payments mined in dropped blocks are checked again"]
    assert_paid_once(world, world.users)


# -- a lost transaction ------------------------------------------------------------------------
def test_dropped_payment_is_resent_byte_for_byte(devnet: Devnet, proxy: RpcProxy,
                                                 tmp_path: Path) -> None:
    """The node loses every payment transaction before mining it (anvil_dropTransaction on
    the hashes the ledger recorded): each is sent again with the very same bytes, mined once."""
    world = make_world(devnet, tmp_path, 10, seed=603, via=proxy.url)
    world.begin()
    world.register(world.users)
    nonce = world.nonce()
    dropped: list[str] = []

    def drop_recorded() -> None:
        with world.store() as store:
            hashes = [p.tx_hash for p in store.payments("eth", [Status.SUBMITTED])]
        if not hashes:  # not the payments' mine yet
            proxy.before_mine = drop_recorded
            return
        for h in hashes:  # (dropping one drops those queued behind its nonce as well)
            anvil.rpc(devnet.rpc_url, "anvil_dropTransaction", [h])
        for h in hashes:
            assert anvil.rpc(devnet.rpc_url, "eth_getTransactionByHash", [h]) is None
            dropped.append(str(h))

    proxy.before_mine = drop_recorded
    # signed again, a payment would have other bytes: a dropped hash mined proves a resend
    result = world.sync(world.signing_anew_changes_bytes(), batch_size=100)

    assert result.ok and result.done == 10, result.render_text()
    assert len(dropped) == 30
    ledger = world.ledger()
    assert sorted(p.tx_hash for p in ledger) == sorted(dropped)
    assert {h: len(proxy.sent[h]) for h in dropped} == {h: 2 for h in dropped}, \
        "each dropped transaction sent twice"
    assert all(a == b for a, b in proxy.sent.values()), "re-sent with other bytes"
    receipts = world.client.receipts(dropped)
    assert len(receipts) == 30 and all(r.ok for r in receipts.values())
    assert {p.tx_hash: p.block_number for p in ledger} == \
        {h: r.block_number for h, r in receipts.items()}
    assert_paid_once(world, world.users)
    assert world.nonce() - nonce == 30


# -- a node that refuses wide log queries --------------------------------------------------------
REFUSALS = {
    # provider-style answers to an eth_getLogs over too many blocks / with too many results
    "blocks": (dict(max_log_blocks=4),
               (-32602, "eth_getLogs is limited to a 4 block range")),
    "results": (dict(max_log_results=4),
                (-32602, "query returned more than 4 results")),
    # Infura's own words and code: -32005 is also its rate-limit code, so this one must be
    # told apart from a rate limit (split the range, do not wait and retry)
    "infura": (dict(max_log_results=4),
               (-32005, "query returned more than 4 results")),
}


@pytest.mark.parametrize("limit", sorted(REFUSALS))
def test_refused_log_ranges_are_halved_and_every_registration_found(
        devnet: Devnet, proxy: RpcProxy, tmp_path: Path, limit: str) -> None:
    limits, proxy.refusal = REFUSALS[limit]
    for name, value in limits.items():
        setattr(proxy, name, value)
    world = make_world(devnet, tmp_path, 24, seed=604, via=proxy.url)
    start = world.begin()
    blocks = []
    for i in range(0, 24, 3):  # 3 registrations a block, 2 empty blocks between
        blocks.append(world.register(world.users[i:i + 3]))
        world.mine(2)
    end = world.head()

    result = world.sync()

    assert result.ok and result.done == 24, result.render_text()
    assert_paid_once(world, world.users)
    refused, answered = proxy.refused_queries(), proxy.answered_queries()
    assert refused, "the proxy never refused: the test proves nothing"
    # a refused range is asked again from its start, shorter (halved)
    assert any(q.first == refused[0].first and q.last < refused[0].last
               for q in answered + refused[1:])
    if limit == "blocks":
        assert all(q.last - q.first + 1 <= 4 for q in answered)
    else:
        assert all(q.results <= 4 for q in answered)
    # the answered ranges tile the chain from the cursor's start, without gap or overlap
    covered = sorted((q.first, q.last) for q in answered)
    assert covered[0][0] == start
    assert all(b[0] == a[1] + 1 for a, b in zip(covered, covered[1:], strict=False))
    assert covered[-1][1] >= end
    assert sum(q.results for q in answered) == 24
