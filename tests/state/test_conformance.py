"""One conformance suite for every state store backend (SQLite and PostgreSQL)."""

from __future__ import annotations

import multiprocessing

import pytest

from cic_seeding.errors import StateError
from cic_seeding.state import (
    FAUCET,
    FUND,
    GAS,
    REGISTER,
    PaymentSummary,
    StateStore,
    Status,
    open_state_store,
)

A = "0x" + "Ab" * 20
B = "0x" + "cd" * 20
C = "0x" + "Ef" * 20


def addr(i: int) -> str:
    return "0x" + f"{i:040x}"


def test_add_users_is_idempotent_and_lowercases(store: StateStore) -> None:
    assert store.add_users("eth", [(0, A), (1, B)]) == 2
    assert store.add_users("eth", [(0, A), (2, C)]) == 1
    users = store.users("eth")
    assert [u.address for u in users] == [A.lower(), B.lower(), C.lower()]
    assert [u.index for u in users] == [0, 1, 2]
    assert all(u.status is Status.PENDING and u.attempts == 0 for u in users)
    assert store.users("other") == []
    assert store.user("eth", A.upper().replace("0X", "0x")) == users[0]


def test_transitions_and_counts(store: StateStore) -> None:
    store.add_users("eth", [(0, A), (1, B), (2, C)])
    store.mark_submitted("eth", [(A, REGISTER, "0x01", None),
                                 (B, REGISTER, "0x02", "0x" + "11" * 20)])
    a = store.user("eth", A)
    assert a is not None and a.status is Status.SUBMITTED and a.attempts == 1
    assert a.txs == {REGISTER: "0x01"} and a.target is None
    store.mark_submitted("eth", [(A, REGISTER, "0x03", None)])
    a = store.user("eth", A)
    assert a is not None and a.txs == {REGISTER: "0x03"} and a.attempts == 2
    store.mark_confirmed("eth", [(A, None), (B, None)])
    store.mark_failed("eth", [(C, "reverted: AccountsIndex: already added")])
    assert store.user("eth", A).target == A.lower()  # type: ignore[union-attr]
    assert store.user("eth", B).target == "0x" + "11" * 20  # type: ignore[union-attr]
    c = store.user("eth", C)
    assert c is not None and c.status is Status.FAILED and "already added" in (c.reason or "")
    assert store.counts("eth") == {Status.PENDING: 0, Status.SUBMITTED: 0,
                                   Status.CONFIRMED: 2, Status.FAILED: 1}
    assert store.addresses("eth", [Status.CONFIRMED]) == {A.lower(), B.lower()}
    assert store.addresses("eth", []) == set()
    assert store.targets("eth") == {A.lower(): A.lower(), "0x" + "11" * 20: B.lower()}
    assert [u.address for u in store.users("eth", [Status.FAILED, Status.PENDING])] == [C.lower()]
    # a failure is retried: resubmitting clears the reason
    store.mark_submitted("eth", [(C, REGISTER, "0x04", None)])
    c = store.user("eth", C)
    assert c is not None and c.reason is None and c.status is Status.SUBMITTED


def test_cursor_lifecycle(store: StateStore) -> None:
    assert store.cursor("eth", "evm:x:1:y") is None
    assert store.init_cursor("eth", "evm:x:1:y", 10).next_block == 10
    assert store.init_cursor("eth", "evm:x:1:y", 99).next_block == 10  # kept
    store.advance_cursor("eth", "evm:x:1:y", 13, {10: "0xa", 11: "0xb", 12: "0xc"})
    cur = store.cursor("eth", "evm:x:1:y")
    assert cur is not None and cur.next_block == 13 and cur.hashes == {10: "0xa", 11: "0xb",
                                                                       12: "0xc"}
    store.rewind_cursor("eth", "evm:x:1:y", 11)
    cur = store.cursor("eth", "evm:x:1:y")
    assert cur is not None and cur.next_block == 11 and cur.hashes == {10: "0xa"}
    assert store.cursor("eth", "evm:x:2:y") is None


def test_cursor_keeps_only_recent_hashes(store: StateStore) -> None:
    keep = store.KEEP_HASHES
    store.advance_cursor("eth", "c", 2 * keep, {n: hex(n) for n in range(2 * keep)})
    cur = store.cursor("eth", "c")
    assert cur is not None and min(cur.hashes) == keep and len(cur.hashes) == keep


def test_payments_ledger_once_per_kind(store: StateStore) -> None:
    big = 10**30  # beyond 64 bits: amounts are exact
    assert store.plan_payments("eth", [(A, FUND, big), (A, FAUCET, 0), (A, GAS, 10**16)]) == 3
    assert store.plan_payments("eth", [(A, FUND, 1), (B, FUND, 5)]) == 1
    fund = store.payment("eth", A, FUND)
    assert fund is not None and fund.amount == big and fund.status is Status.PENDING
    store.mark_payments_submitted("eth", [(A, FUND, "0xh1", "0xraw1", 7)])
    fund = store.payment("eth", A, FUND)
    assert fund is not None and (fund.status, fund.tx_hash, fund.raw_tx, fund.nonce) == (
        Status.SUBMITTED, "0xh1", "0xraw1", 7)
    store.mark_payments_confirmed("eth", [(A, FUND, 42)])
    store.mark_payments_failed("eth", [(A, GAS, "signer has no ether")])
    assert store.payment("eth", A, FUND).block_number == 42  # type: ignore[union-attr]
    assert [p.kind for p in store.payments("eth", [Status.PENDING])] == [FAUCET, FUND]
    assert [p.address for p in store.payments("eth", kind=FUND)] == [A.lower(), B.lower()]
    assert len(store.payments("eth", limit=2)) == 2
    counts = store.payment_counts("eth")
    assert counts[(FUND, Status.CONFIRMED)] == 1 and counts[(GAS, Status.FAILED)] == 1
    store.reset_payments("eth", [(A, GAS)])
    gas = store.payment("eth", A, GAS)
    assert gas is not None and gas.status is Status.PENDING and gas.tx_hash is None


def test_payment_summary_counts_users_not_rows(store: StateStore) -> None:
    assert store.payment_summary("eth") == PaymentSummary(0, 0, 0)
    store.plan_payments("eth", [(A, FUND, 5), (A, GAS, 1), (B, FUND, 5), (B, GAS, 1),
                                (C, FUND, 5)])
    store.mark_payments_confirmed("eth", [(A, FUND, 3), (A, GAS, 3), (B, FUND, 3)])
    store.mark_payments_failed("eth", [(C, FUND, "reverted")])
    store.plan_payments("other", [(A, FUND, 1)])
    assert store.payment_summary("eth") == PaymentSummary(planned=3, done=1, failed=1)
    store.mark_payments_confirmed("eth", [(B, GAS, 4)])
    assert store.payment_summary("eth") == PaymentSummary(planned=3, done=2, failed=1)


def test_unplanned_targets_are_users_with_a_target_and_no_payment(store: StateStore) -> None:
    t = "0x" + "11" * 20
    store.add_users("eth", [(0, A), (1, B), (2, C)])
    store.mark_submitted("eth", [(B, REGISTER, "0x02", t)])
    store.mark_confirmed("eth", [(A, None), (C, None)])
    assert store.unplanned_targets("eth") == [A.lower(), t, C.lower()]
    assert store.unplanned_targets("eth", limit=1) == [A.lower()]
    store.plan_payments("eth", [(t, FUND, 1)])
    assert store.unplanned_targets("eth") == [A.lower(), C.lower()]
    assert store.unplanned_targets("other") == []


def test_payments_page_after_a_seq_even_as_statuses_change(store: StateStore) -> None:
    store.plan_payments("eth", [(addr(i), FUND, i + 1) for i in range(7)])
    seen, after = [], 0
    while page := store.payments("eth", [Status.PENDING], limit=3, after=after):
        seen += [p.address for p in page]
        after = page[-1].seq
        # settling the page while paging must not shift the next one
        store.mark_payments_confirmed("eth", [(page[0].address, FUND, 1)])
    assert seen == [addr(i) for i in range(7)]
    assert [p.seq for p in store.payments("eth")] == sorted(p.seq for p in store.payments("eth"))


def test_reopen_payments_after_reorg(store: StateStore) -> None:
    store.plan_payments("eth", [(A, FUND, 1), (B, FUND, 1)])
    store.mark_payments_submitted("eth", [(A, FUND, "0x1", "0xr", 0), (B, FUND, "0x2", "0xr", 1)])
    store.mark_payments_confirmed("eth", [(A, FUND, 10), (B, FUND, 20)])
    assert store.reopen_payments("eth", 15) == 1
    b = store.payment("eth", B, FUND)
    assert b is not None and b.status is Status.SUBMITTED and b.tx_hash == "0x2"
    assert b.block_number is None and b.raw_tx == "0xr"


def test_transaction_commits_cursor_and_effects_together(store: StateStore) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.plan_payments("eth", [(A, FUND, 1)])
        store.advance_cursor("eth", "c", 5, {4: "0x4"})
        raise RuntimeError("crash before commit")
    assert store.cursor("eth", "c") is None and store.payment("eth", A, FUND) is None
    with store.transaction():
        with store.transaction():  # nested joins the outer one
            store.plan_payments("eth", [(A, FUND, 1)])
        store.advance_cursor("eth", "c", 5, {4: "0x4"})
    assert store.cursor("eth", "c").next_block == 5  # type: ignore[union-attr]
    assert store.payment("eth", A, FUND) is not None


def test_bulk_operations_at_20k_rows(store: StateStore) -> None:
    """Bulk paths stay correct at scale (their speed is the benchmarks' business)."""
    n = 20_000
    rows = [(i, addr(i)) for i in range(n)]
    assert store.add_users("eth", rows) == n
    store.mark_submitted("eth", [(a, REGISTER, "0x" + "00" * 32, None) for _, a in rows])
    store.mark_confirmed("eth", [(a, None) for _, a in rows])
    store.plan_payments("eth", [(a, FUND, 5) for _, a in rows])
    assert len(store.addresses("eth", [Status.CONFIRMED])) == n
    assert len(store.users("eth")) == n
    assert store.payment_counts("eth") == {(FUND, Status.PENDING): n}
    assert store.add_users("eth", rows) == 0  # existing users are left alone


def test_state_persists_across_reopen(backend: tuple[str, str | None]) -> None:
    url, schema = backend
    with open_state_store(url=url, schema=schema) as s:
        s.add_users("eth", [(0, A)])
        s.advance_cursor("eth", "c", 3, {2: "0x2"})
    with open_state_store(url=url, schema=schema) as s:
        assert s.addresses("eth") == {A.lower()}
        assert s.cursor("eth", "c").next_block == 3  # type: ignore[union-attr]


def _hold_lock(url: str, schema: str | None, ready: multiprocessing.synchronize.Event,
               release: multiprocessing.synchronize.Event) -> None:
    with open_state_store(url=url, schema=schema) as s, s.exclusive("sync-eth"):
        ready.set()
        release.wait(30)


def test_exclusive_lock_across_processes(backend: tuple[str, str | None]) -> None:
    url, schema = backend
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold_lock, args=(url, schema, ready, release))
    proc.start()
    try:
        assert ready.wait(30)
        with open_state_store(url=url, schema=schema) as s:
            with pytest.raises(StateError, match="already running"), s.exclusive("sync-eth"):
                pass
            with s.exclusive("seed-eth"):  # another name is free
                pass
    finally:
        release.set()
        proc.join(30)
    assert proc.exitcode == 0
    with open_state_store(url=url, schema=schema) as s, s.exclusive("sync-eth"):
        pass


def test_concurrent_writers_do_not_lose_updates(backend: tuple[str, str | None]) -> None:
    url, schema = backend
    with open_state_store(url=url, schema=schema) as s:
        s.add_users("eth", [(i, addr(i)) for i in range(200)])
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_confirm_range, args=(url, schema, k)) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with open_state_store(url=url, schema=schema) as s:
        assert s.counts("eth")[Status.CONFIRMED] == 200


def _confirm_range(url: str, schema: str | None, k: int) -> None:
    with open_state_store(url=url, schema=schema) as s:
        for i in range(k, 200, 2):
            s.mark_confirmed("eth", [(addr(i), None)])
