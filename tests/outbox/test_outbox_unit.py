"""The outbox's decisions against a tiny fake node (a seam: real signatures, a real state
store): lost transactions re-sent byte for byte lowest nonce first, gaps of another purpose
filled first, replaced ones reported, fee bumps, bounds, resume after a crash, reorgs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from cic_seeding.chain._txcodec import decode
from cic_seeding.chain.signer import Signer
from cic_seeding.chain.tx import Call
from cic_seeding.outbox import Intent, Outbox, Policy
from cic_seeding.state import StateStore, TxStatus, open_state_store
from tests.outbox.fakenode import FakeNode, tx_hash

KEY = Signer.from_key("77" * 32)
OTHER = Signer.from_key("78" * 32)
TO = "0x" + "11" * 20


def intents(purpose: str, *names: str) -> list[Intent]:
    return [Intent(Call(TO, f"{purpose}:{n}".encode(), gas=50_000), purpose, n) for n in names]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    s = open_state_store(url=str(tmp_path / "state.db"))
    yield s
    s.close()


def outbox(store: StateStore, node: FakeNode, **policy: object) -> Outbox:
    return Outbox(store, node, Policy(**{"resend_after": 0.0, **policy}))  # type: ignore[arg-type]


def test_sent_transactions_are_recorded_first_and_mined_once(store: StateStore) -> None:
    node = FakeNode()
    box = outbox(store, node)
    seen_at_record: list[int] = []
    sent = box.send(KEY, intents("register", "a", "b", "c"),
                    on_record=lambda start, rows: seen_at_record.append(len(node.broadcasts)))
    assert seen_at_record == [0], "recorded before anything was broadcast"
    assert [t.nonce for t in sent] == [0, 1, 2] and {t.status for t in sent} == {TxStatus.SENT}
    outcomes = box.wait([t.family for t in sent])
    assert {o.status for o in outcomes.values()} == {TxStatus.MINED}
    assert all(n == 1 for n in node.effects.values()) and len(node.effects) == 3
    assert box.counts.to_dict() == {"sent": 3, "rebroadcast": 0, "replaced": 0, "bumped": 0}


def test_a_lost_transaction_is_sent_again_byte_for_byte(store: StateStore) -> None:
    node = FakeNode()
    box = outbox(store, node)
    sent = box.send(KEY, intents("fund", "a", "b"))
    node.drop(sent[0].tx_hash)  # b is stuck behind the gap
    outcomes = box.wait([t.family for t in sent])
    assert {o.status for o in outcomes.values()} == {TxStatus.MINED}
    assert [tx_hash(r) for r in node.broadcasts].count(sent[0].tx_hash) == 2
    assert all(n == 1 for n in node.effects.values())
    assert box.counts.rebroadcast == 1


def test_a_gap_of_another_purpose_is_filled_first(store: StateStore) -> None:
    """The importer's add() lost below the syncer's payments: watching the payments re-sends
    the add first (lowest nonce first), and everything is mined once."""
    node = FakeNode()
    box = outbox(store, node)
    (add,) = box.send(KEY, intents("register", "u"))
    node.drop(add.tx_hash)
    pays = box.send(KEY, intents("fund", "u", "v"))
    # the allocation saw nonce 0 lacking at the node and sent the add again before the payments
    assert [t.nonce for t in pays] == [1, 2]
    firsts = [decode(bytes.fromhex(r[2:])).nonce for r in node.broadcasts]
    assert firsts == [0, 0, 1, 2]
    outcomes = box.wait([t.family for t in pays] + [add.family])
    assert {o.status for o in outcomes.values()} == {TxStatus.MINED}

    # lost while the payments queue behind it: watching only the payments repairs it
    (add2,) = box.send(KEY, intents("register", "w"))
    pays2 = box.send(KEY, intents("fund", "w", "x"))
    node.drop(add2.tx_hash)
    assert node.pending(KEY.address.lower()) == add2.nonce
    outcomes = box.wait([t.family for t in pays2])
    assert all(o.ok for o in outcomes.values())
    assert node.effects[b"register:w"] == 1 and node.effects[b"fund:w"] == 1
    assert node.effects[b"fund:x"] == 1
    assert box.counts.rebroadcast == 2  # the first add at allocation, the second as a blocker


def test_a_replaced_nonce_is_reported_never_resent(store: StateStore) -> None:
    node = FakeNode()
    box = outbox(store, node)
    (mine,) = box.send(KEY, intents("gas", "a"))
    node.drop(mine.tx_hash)
    other = KEY.sign(Call(TO, b"someone else", gas=21_000), nonce=mine.nonce, gas_price=99,
                     chain_id=1)
    node.take_nonce(other.raw)
    outcomes = box.wait([mine.family])
    assert outcomes[mine.family].status == TxStatus.REPLACED
    assert node.effects[b"gas:a"] == 0
    assert [tx_hash(r) for r in node.broadcasts].count(mine.tx_hash) == 1
    assert box.counts.replaced == 1
    # the next send takes the next free nonce
    (again,) = box.send(KEY, intents("gas", "a"))
    assert again.nonce == mine.nonce + 1


def test_a_refused_first_send_at_a_used_nonce_is_replaced(store: StateStore) -> None:
    node = FakeNode()
    box = outbox(store, node)
    real = node.broadcast
    node.broadcast = lambda raws, mine=True: ["nonce too low"] * len(raws)  # type: ignore[method-assign]
    (t,) = box.send(KEY, intents("fund", "a"))
    node.broadcast = real  # type: ignore[method-assign]
    assert t.status == TxStatus.REPLACED
    assert box.wait([t.family])[t.family].status == TxStatus.REPLACED


def test_other_refusals_fail_and_free_the_nonce(store: StateStore) -> None:
    node = FakeNode()
    box = outbox(store, node)
    real = node.broadcast
    node.broadcast = lambda raws, mine=True: ["insufficient funds for gas * price + value"] * len(raws)  # type: ignore[method-assign]  # noqa: E501
    (t,) = box.send(KEY, intents("fund", "a"))
    node.broadcast = real  # type: ignore[method-assign]
    assert t.status == TxStatus.FAILED and "insufficient funds" in (t.reason or "")
    (t2,) = box.send(KEY, intents("fund", "a"))
    assert t2.nonce == t.nonce


def test_priced_below_the_base_fee_is_bumped_and_mined_once(store: StateStore) -> None:
    node = FakeNode()
    box = outbox(store, node)
    (t,) = box.send(KEY, intents("fund", "a"))  # pooled at price 10, not mined yet
    node.base_fee = 50  # the fee market moved: our price is below the base fee
    outcomes = box.wait([t.family])
    o = outcomes[t.family]
    assert o.ok and o.tx_hash != t.tx_hash, "the bump was mined"
    bump = decode(bytes.fromhex(next(r for r in node.broadcasts
                                     if tx_hash(r) == o.tx_hash)[2:]))
    assert bump.tx_type == 2 and bump.nonce == t.nonce and bump.max_fee >= 2 * 50
    assert node.effects[b"fund:a"] == 1
    rows = store.txs(box.chain, families=[t.family])
    assert {r.tx_hash: r.status for r in rows} == {t.tx_hash: TxStatus.SUPERSEDED,
                                                   o.tx_hash: TxStatus.MINED}
    assert box.counts.bumped == 1


def test_one_the_node_holds_but_never_mines_is_bumped_and_the_rest_follow(
        store: StateStore) -> None:
    """The node knows the transaction at the sender's next nonce but counts nothing pending
    and never mines it (anvil's automine pool did this under load): the same bytes again are
    "already known", so it is replaced by a fee bump; every effect happens once."""
    node = FakeNode()
    box = outbox(store, node)
    sent = box.send(KEY, intents("register", "a", "b", "c"))
    node.starve.add(sent[0].tx_hash)
    outcomes = box.wait([t.family for t in sent])
    assert all(o.ok for o in outcomes.values())
    assert outcomes[sent[0].family].tx_hash != sent[0].tx_hash, "the bump was mined"
    assert all(outcomes[t.family].tx_hash == t.tx_hash for t in sent[1:])
    assert node.effects == {b"register:a": 1, b"register:b": 1, b"register:c": 1}
    assert box.counts.bumped == 1


def test_a_node_that_keeps_losing_it_is_given_up_after_the_cap(store: StateStore) -> None:
    node = FakeNode()
    box = outbox(store, node, max_resends=3)
    (t,) = box.send(KEY, intents("fund", "a"))
    node.drop(t.tx_hash)
    real = node._take

    def lossy(raw: str) -> str | None:
        node.lose.add(tx_hash(raw))
        return real(raw)

    node._take = lossy  # type: ignore[method-assign]
    o = box.wait([t.family])[t.family]
    assert o.gave_up and o.status == TxStatus.SENT and "3 broadcasts" in (o.reason or ""), o
    assert box.counts.rebroadcast == 3
    # still open: a rerun (a new outbox) resumes the same bytes
    node._take = real  # type: ignore[method-assign]
    assert outbox(store, node).wait([t.family])[t.family].ok
    assert node.effects[b"fund:a"] == 1


def test_a_crash_between_record_and_broadcast_is_resumed_by_the_next_run(
        store: StateStore) -> None:
    node = FakeNode()

    def crash(raws: object, mine: bool = True) -> list[str | None]:
        raise KeyboardInterrupt

    node.broadcast = crash  # type: ignore[assignment, method-assign]
    with pytest.raises(KeyboardInterrupt):
        outbox(store, node).send(KEY, intents("register", "a", "b"))
    del node.broadcast
    box = outbox(store, node)
    assert box.open_families("register", ["a", "b", "c"]).keys() == {"a", "b"}
    families = list(box.open_families("register", ["a", "b"]).values())
    assert all(o.ok for o in box.wait(families).values())
    assert node.effects == {b"register:a": 1, b"register:b": 1}
    assert box.counts.rebroadcast == 2


def test_a_reorged_transaction_is_sent_again(store: StateStore) -> None:
    node = FakeNode()
    box = outbox(store, node)
    (t,) = box.send(KEY, intents("fund", "a"))
    assert box.wait([t.family])[t.family].ok
    node.unmine(t.tx_hash)
    assert box.wait([t.family])[t.family].ok
    assert node.effects[b"fund:a"] == 1


def test_several_signers_in_one_send(store: StateStore) -> None:
    node = FakeNode(automine=True)
    box = outbox(store, node)
    sent = box.send_many([(KEY, intents("t", "1")[0]), (OTHER, intents("t", "2")[0]),
                          (KEY, intents("t", "3")[0])], lock=False)
    assert [(t.sender, t.nonce) for t in sent] == [
        (KEY.address.lower(), 0), (OTHER.address.lower(), 0), (KEY.address.lower(), 1)]
    assert all(o.ok for o in box.wait([t.family for t in sent]).values())


def test_a_self_mining_node_is_never_asked_to_mine(store: StateStore) -> None:
    node = FakeNode(automine=True)
    box = outbox(store, node)
    box.node = _NoMine(node)  # type: ignore[assignment]
    sent = box.send(KEY, intents("fund", "a", "b"))
    assert all(o.ok for o in box.wait([t.family for t in sent]).values())


class _NoMine:
    """The fake node, failing the test if the outbox asks it to mine."""

    def __init__(self, node: FakeNode) -> None:
        self._node = node

    def __getattr__(self, name: str) -> object:
        if name == "mine":
            raise AssertionError("a self-mining node was asked to mine")
        return getattr(self._node, name)


def test_a_legacy_ledger_transaction_is_adopted(store: StateStore) -> None:
    node = FakeNode()
    box = outbox(store, node)
    old = KEY.sign(Call(TO, b"fund:old", gas=50_000), nonce=0, gas_price=10, chain_id=1)
    (h,) = box.adopt([(old.raw, "fund", "0xabc")])
    assert h == old.tx_hash
    assert box.wait([h])[h].ok, "never broadcast before: sent again from the record"
    assert node.effects[b"fund:old"] == 1


def test_a_fee_market_that_outruns_every_bump_is_given_up_after_the_cap(
        store: StateStore) -> None:
    node = FakeNode()
    box = outbox(store, node, max_bumps=2)
    (t,) = box.send(KEY, intents("fund", "a"))
    real = node.broadcast

    def runaway(raws: Sequence[str]) -> list[str | None]:
        node.base_fee = (node.base_fee or 10) * 100  # every bump is outrun at once
        return real(raws)

    node.broadcast = runaway  # type: ignore[method-assign]
    node.base_fee = 50
    o = box.wait([t.family])[t.family]
    assert o.gave_up and "after 2 fee bumps" in (o.reason or ""), o
    assert box.counts.bumped == 2 and node.effects[b"fund:a"] == 0
    rows = {r.tx_hash: r.status for r in store.txs(box.chain, families=[t.family])}
    assert rows.pop(t.tx_hash).open, "the first signature is still open: a rerun resumes it"
    assert set(rows.values()) == {TxStatus.FAILED}, "the outrun bumps the node refused"


def test_a_devnet_is_asked_for_a_block_every_block_size_transactions(store: StateStore) -> None:
    """On a node that mines when asked, a block is asked for once ``block_size`` transactions
    were sent since the last (across sends), after every chunk before it was taken, and after
    a send's last unless the send says more follow (``mine=False``)."""
    node = FakeNode()
    node.block_size = 250
    box = outbox(store, node)
    sent = box.send(KEY, intents("a", *map(str, range(600))))
    assert node.asked == [300, 600]  # chunks of 100: the third crosses 250; the last
    for i in range(3):
        box.send(KEY, intents("b", *(f"{i}-{n}" for n in range(100))), mine=False)
    assert node.asked == [300, 600, 900]  # the third send of 100 reached 250
    box.send(KEY, intents("c", "x"), mine=False)
    assert node.asked == [300, 600, 900]
    done = box.wait([t.family for t in sent])  # waiting mines what was not asked for
    assert all(o.ok for o in done.values()) and len(node.mined) == 901
