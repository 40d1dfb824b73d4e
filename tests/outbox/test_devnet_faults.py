"""Faults injected into a real ``--no-mining`` devnet between broadcast and mining: a recorded
transaction dropped (``anvil_dropTransaction``), its nonce taken by another transaction of the
same key, the process killed (in-process between record and broadcast; ``kill -9`` of the
syncer mid-run). Every user ends registered once and paid once, read from the chain's logs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from eth_utils import keccak

from cic_devnet.devnet import Devnet
from cic_seeding.chain.client import ChainClient
from cic_seeding.chain.connect import connect
from cic_seeding.chain.registry import FAUCET
from cic_seeding.chain.signer import read_signed
from cic_seeding.chain.tx import Call
from cic_seeding.config import Settings
from cic_seeding.datadir import DataDir
from cic_seeding.importers.eth import ADD_GAS, EthImporter
from cic_seeding.outbox import ClientNode, Outbox, policy_of
from cic_seeding.state import TxStatus, open_state_store
from cic_seeding.sync.run import run_sync
from cic_seeding.sync.syncer import SyncOptions, SyncResult
from tests.e2e.ledger import make_data
from tests.e2e.procs import clean_env, db_count, running, seed_args, wait_for
from tests.outbox.nodes import Node, assert_each_paid_once

Fault = Callable[[ChainClient, list[str], list[str]], None]  # (client, raws, hashes)


When = Callable[[list[str]], bool]  # which broadcast (its raws) a fault hits


def always(raws: list[str]) -> bool:
    return True


class FaultyNode(ClientNode):
    """The devnet's node, with faults injected after the node took a broadcast and before it
    mines: each fault once, on the first broadcast its ``when`` accepts."""

    def __init__(self, client: ChainClient, *faults: Fault | tuple[Fault, When]) -> None:
        super().__init__(client)
        self.faults = [f if isinstance(f, tuple) else (f, always) for f in faults]
        self.hit: list[list[str]] = []  # hashes of each broadcast a fault hit

    def broadcast(self, raws: Sequence[str], *, mine: bool = True) -> list[str | None]:
        errors = self.client.broadcast(raws, mine=False)
        for i, (fault, when) in enumerate(self.faults):
            if when(list(raws)):
                del self.faults[i]
                self.hit.append(["0x" + keccak(bytes.fromhex(r[2:])).hex() for r in raws])
                fault(self.client, list(raws), self.hit[-1])
                break
        self.client.mine()
        return errors


def drop_all(client: ChainClient, raws: list[str], hashes: list[str]) -> None:
    for h in hashes:  # (dropping one drops those queued behind its nonce too)
        client.rpc.call("anvil_dropTransaction", [h])
    assert client.known(hashes) == set()


def first_calls(selector: bytes | None) -> When:
    """A broadcast whose first transaction calls ``selector`` (None: sends coin, no data)."""

    def check(raws: list[str]) -> bool:
        tx = read_signed(raws[0])
        return tx.data[:4] == selector if selector else (tx.data == b"" and tx.value > 0)

    return check


def importer_with(settings: Settings, node: Callable[[ChainClient], ClientNode]) -> EthImporter:
    importer = EthImporter(settings)
    importer.outbox.node = node(importer.client)
    return importer


def sync_with(settings: Settings, node: Callable[[ChainClient], ClientNode],
              monkeypatch: pytest.MonkeyPatch) -> SyncResult:
    made: list[Outbox] = []

    def outbox_for(s: Settings, client: ChainClient, store: object) -> Outbox:
        made.append(Outbox(store, node(client), policy_of(s)))  # type: ignore[arg-type]
        return made[-1]

    monkeypatch.setattr("cic_seeding.sync.run.outbox_for", outbox_for)
    result = run_sync(settings, "eth", SyncOptions(timeout=120, poll=0.05))
    monkeypatch.undo()
    return result


def chain_node(devnet: Devnet, settings: Settings) -> Node:
    client = connect(settings).client
    assert client.signer is not None
    return Node(devnet.rpc_url, devnet.registry, Path(), Path(), client.signer.address.lower())


def mined(settings: Settings, hashes: Sequence[str]) -> set[str]:
    return set(connect(settings, signer=False).client.receipts(list(hashes)))


GIVE_TO = FAUCET.fn("giveTo").selector


def test_dropped_transactions_are_sent_again_with_the_same_hash(
        module_devnet: Devnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_data(module_devnet, tmp_path, 24, seed=701, batch_size=8)
    nodes: list[FaultyNode] = []

    def dropping(client: ChainClient) -> FaultyNode:
        nodes.append(FaultyNode(client, drop_all))
        return nodes[-1]

    importer = importer_with(settings, dropping)
    try:
        imported = importer.run()
    finally:
        importer.close()
    assert imported.ok and imported.confirmed == 24, imported.render_text()
    (dropped_adds,) = nodes[0].hit
    assert len(dropped_adds) == 8 and mined(settings, dropped_adds) == set(dropped_adds)
    assert imported.transactions["rebroadcast"] >= 8 and imported.transactions["sent"] == 24

    synced = sync_with(settings, dropping, monkeypatch)
    assert synced.ok, synced.render_text()
    (dropped_payments,) = nodes[1].hit
    assert len(dropped_payments) > 0
    assert mined(settings, dropped_payments) == set(dropped_payments), \
        "each dropped payment was mined under its own hash: re-sent, not re-signed"
    assert synced.transactions["rebroadcast"] >= len(dropped_payments)
    assert synced.transactions["replaced"] == 0
    assert_each_paid_once(chain_node(module_devnet, settings), Path(settings.data_dir))


def take_nonce_with(make: Callable[[list[str]], Call]) -> Fault:
    """Drop the broadcast and mine, at its first nonce, another transaction of the same key
    (``make(raws)``), priced higher: the first transaction is replaced, the rest lost."""

    def fault(client: ChainClient, raws: list[str], hashes: list[str]) -> None:
        drop_all(client, raws, hashes)
        first = read_signed(raws[0])
        assert client.signer is not None
        other = client.signer.sign(make(raws), nonce=first.nonce,
                                   gas_price=first.max_fee * 2, chain_id=client.chain_id)
        assert client.broadcast([other.raw], mine=False) == [None]

    return fault


def test_a_replaced_registration_is_reconciled_before_it_is_signed_again(
        module_devnet: Devnet, tmp_path: Path) -> None:
    """One add() loses its nonce to a self-transfer (the user is not registered: signed
    again); another loses it to an add() of the same user at a higher price (registered: not
    signed again). Each user ends registered once."""
    settings = make_data(module_devnet, tmp_path, 10, seed=702, batch_size=5)
    users = [u.address for u in DataDir(Path(settings.data_dir)).users()]

    def self_transfer(raws: list[str]) -> Call:
        return Call(chain_node(module_devnet, settings).signer, b"", gas=21_000)

    def same_add(raws: list[str]) -> Call:
        tx = read_signed(raws[0])
        return Call("0x" + tx.to.hex(), tx.data, gas=ADD_GAS)

    first_run = importer_with(settings, lambda c: FaultyNode(c, take_nonce_with(self_transfer)))
    try:
        first = first_run.run(limit=5)
    finally:
        first_run.close()
    importer = importer_with(settings, lambda c: FaultyNode(c, take_nonce_with(same_add)))
    try:
        second = importer.run()
    finally:
        importer.close()
    assert first.ok and second.ok, first.render_text() + second.render_text()
    assert first.transactions["replaced"] == 1 and second.transactions["replaced"] == 1
    with open_state_store(settings) as store:
        rows = store.txs(importer.outbox.chain, purpose="register")
    signed = {u.lower(): sum(1 for t in rows if t.owner == u.lower()) for u in users}
    # users[0] was replaced by a self-transfer: signed twice; users[5] by its own add: once
    assert signed[users[0].lower()] == 2 and signed[users[5].lower()] == 1
    assert sum(signed.values()) == 11
    statuses = {t.owner: t.status for t in rows if t.status == TxStatus.REPLACED}
    assert set(statuses) == {users[0].lower(), users[5].lower()}
    assert_each_paid_once_registered(module_devnet, settings, users)


def assert_each_paid_once_registered(devnet: Devnet, settings: Settings,
                                     users: Sequence[str]) -> None:
    from tests.outbox.nodes import effects

    got = effects(chain_node(devnet, settings), [u.lower() for u in users])
    assert {u.lower(): got.registrations[u.lower()] for u in users} == \
        {u.lower(): 1 for u in users}


def test_a_replaced_payment_is_reconciled_from_the_chain_and_paid_once(
        module_devnet: Devnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A faucet payout's nonce goes to the same payout at a higher price (the chain shows it
    paid: not signed again); a gas gift's nonce to a self-transfer (not paid: signed again).
    One payment per broadcast, so each fault hits exactly one."""
    settings = make_data(module_devnet, tmp_path, 12, seed=703, batch_size=1)
    importer = EthImporter(settings)
    try:
        assert importer.run().ok
    finally:
        importer.close()

    def same_payout(raws: list[str]) -> Call:
        tx = read_signed(raws[0])
        return Call("0x" + tx.to.hex(), tx.data, gas=200_000)

    def self_transfer(raws: list[str]) -> Call:
        return Call(chain_node(module_devnet, settings).signer, b"", gas=21_000)

    nodes: list[FaultyNode] = []

    def faulty(client: ChainClient) -> FaultyNode:
        nodes.append(FaultyNode(client, (take_nonce_with(same_payout), first_calls(GIVE_TO)),
                                (take_nonce_with(self_transfer), first_calls(None))))
        return nodes[-1]

    synced = sync_with(settings, faulty, monkeypatch)
    assert synced.ok, synced.render_text()
    assert len(nodes[0].hit) == 2, "both faults hit"
    assert synced.transactions["replaced"] == 2
    with open_state_store(settings) as store:
        rows = store.txs(connect(settings).client.chain_key)
    replaced = {(t.purpose, t.owner) for t in rows if t.status == TxStatus.REPLACED}
    assert {p for p, _ in replaced} == {"faucet", "gas"}
    signed = {key: sum(1 for t in rows if (t.purpose, t.owner) == key) for key in replaced}
    # the payout the chain shows paid is not signed again; the gas gift it lacks is
    assert sorted(signed.items()) == sorted({k: 1 if k[0] == "faucet" else 2
                                             for k in replaced}.items())
    assert_each_paid_once(chain_node(module_devnet, settings), Path(settings.data_dir))


def test_a_crash_between_record_and_broadcast_is_resumed_not_signed_again(
        module_devnet: Devnet, tmp_path: Path) -> None:
    settings = make_data(module_devnet, tmp_path, 16, seed=704, batch_size=8)

    def crash(client: ChainClient, raws: list[str], hashes: list[str]) -> None:
        drop_all(client, raws, hashes)
        raise KeyboardInterrupt  # the process dies: nothing of the batch reached a block

    importer = importer_with(settings, lambda c: FaultyNode(c, crash))
    with pytest.raises(KeyboardInterrupt):
        importer.run()
    importer.close()
    with open_state_store(settings) as store:
        recorded = {t.owner: t.tx_hash for t in store.txs(importer.outbox.chain,
                                                          purpose="register")}
    assert len(recorded) == 8

    again = EthImporter(settings)
    try:
        rerun = again.run()
    finally:
        again.close()
    assert rerun.ok and rerun.confirmed == 16, rerun.render_text()
    assert rerun.transactions["sent"] == 8, "only the users never signed for were signed"
    with open_state_store(settings) as store:
        rows = store.txs(again.outbox.chain, purpose="register")
    assert len(rows) == 16 and {t.owner: t.tx_hash for t in rows if t.owner in recorded} == \
        recorded, "the rerun resumed the recorded transactions"
    assert mined(settings, list(recorded.values())) == set(recorded.values())


def test_kill9_of_the_syncer_mid_run_then_rerun_pays_exactly_once(devnet: Devnet,
                                                                   tmp_path: Path) -> None:
    settings = make_data(devnet, tmp_path, 120, seed=705)
    importer = EthImporter(settings)
    try:
        assert importer.run().ok
    finally:
        importer.close()
    data = Path(settings.data_dir)
    args = seed_args(data, devnet, "--poll", "0.05")
    env = clean_env(CIC_BATCH_SIZE="10")
    payments = "SELECT count(*) FROM outbox WHERE purpose <> 'register'"
    for at in (40, 170):
        with running("eth/sync.py", *args, cwd=tmp_path, env=env) as sync:
            wait_for(lambda at=at: db_count(data, payments) >= at,  # type: ignore[misc]
                     timeout=120, what=f"{at} payments recorded", while_alive=sync)
            assert sync.kill9() == -9
    with running("eth/sync.py", *args, cwd=tmp_path, env=env) as sync:
        assert sync.wait(180) == 0, sync.report()
    assert "Traceback" not in sync.stderr
    assert_each_paid_once(chain_node(devnet, settings), data)
    # one transaction per payment was mined; nothing was signed twice for one payment
    with open_state_store(settings) as store:
        rows = [t for t in store.txs(connect(settings).client.chain_key)
                if t.purpose != "register"]
    per_payment: dict[tuple[str, str], int] = {}
    for t in rows:
        per_payment[(t.owner, t.purpose)] = per_payment.get((t.owner, t.purpose), 0) + 1
    assert set(per_payment.values()) == {1}
    assert {t.status for t in rows} == {TxStatus.MINED}


def test_a_transaction_priced_below_the_base_fee_is_bumped_and_paid_once(
        devnet: Devnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fee market jumps after the payments reached the pool: priced below the base fee they
    cannot be mined until re-signed at the same nonce with EIP-1559 fees; each user is paid
    once."""
    settings = make_data(devnet, tmp_path, 6, seed=706)
    importer = EthImporter(settings)
    try:
        assert importer.run().ok
    finally:
        importer.close()

    def fee_jump(client: ChainClient, raws: list[str], hashes: list[str]) -> None:
        price = read_signed(raws[0]).max_fee
        client.rpc.call("anvil_setNextBlockBaseFeePerGas", [hex(price * 40)])
        client.mine()  # a block at the new base fee without ours
        # anvil evicts them from its pool (another node keeps them pending): sending the
        # same bytes again is refused below the base fee, waiting mines nothing
        assert client.receipts(hashes) == {}

    nodes: list[FaultyNode] = []

    def faulty(client: ChainClient) -> FaultyNode:
        nodes.append(FaultyNode(client, fee_jump))
        return nodes[-1]

    synced = sync_with(settings, faulty, monkeypatch)
    assert synced.ok, synced.render_text()
    (stuck,) = nodes[0].hit
    assert synced.transactions["bumped"] >= len(stuck)
    assert mined(settings, stuck) == set(), "the underpriced signatures were not mined"
    with open_state_store(settings) as store:
        rows = store.txs(connect(settings).client.chain_key, families=stuck)
    winners = [t for t in rows if t.status == TxStatus.MINED]
    assert len(winners) == len(stuck) and all(read_signed(t.raw).tx_type == 2 for t in winners)
    assert {t.status for t in rows if t.tx_hash in stuck} == {TxStatus.SUPERSEDED}
    assert_each_paid_once(chain_node(devnet, settings), Path(settings.data_dir))


def test_dropped_and_replaced_transfers_of_users_keys_are_made_once(
        module_devnet: Devnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Traffic signs with each user's own key: one batch is dropped (sent again byte for byte),
    and one transfer's nonce goes to another transaction of its sender (signed again, as the
    chain lacks the transfer). Balances end exactly as the rows say."""
    from tests.e2e.test_traffic import expected_after_traffic, seeded

    settings = seeded(module_devnet, tmp_path, seed=7272).replace(batch_size=15)
    expected = expected_after_traffic(settings)

    def user_self_transfer(raws: list[str]) -> Call:
        return Call(read_signed(raws[0]).sender, b"", gas=21_000)

    def take_users_nonce(client: ChainClient, raws: list[str], hashes: list[str]) -> None:
        drop_all(client, raws, hashes)
        first = read_signed(raws[0])
        keys = {u.address.lower(): u.index for u in DataDir(Path(settings.data_dir)).users()}
        from cic_seeding.chain.signer import Signer
        from cic_seeding.generate.keys import derive_private_key

        seed = DataDir(Path(settings.data_dir)).manifest().seed
        signer = Signer.from_key(derive_private_key(seed, keys[first.sender]))
        other = signer.sign(user_self_transfer(raws), nonce=first.nonce,
                            gas_price=first.max_fee * 2, chain_id=client.chain_id)
        assert client.broadcast([other.raw], mine=False) == [None]

    nodes: list[FaultyNode] = []

    def outbox_for(s: Settings, client: ChainClient, store: object) -> Outbox:
        nodes.append(FaultyNode(client, drop_all, take_users_nonce))
        return Outbox(store, nodes[-1], policy_of(s))  # type: ignore[arg-type]

    monkeypatch.setattr("cic_seeding.traffic.outbox_for", outbox_for)
    from cic_seeding.traffic import replay_traffic

    result = replay_traffic(settings)
    assert result.ok, result.render_text()
    assert len(nodes[0].hit) == 2, "both faults hit"
    assert result.transactions["replaced"] == 1 and result.transactions["rebroadcast"] >= 15
    dropped = set(nodes[0].hit[0])
    with open_state_store(settings) as store:
        gone = {t.tx_hash for t in store.txs(connect(settings, signer=False).client.chain_key,
                                             hashes=list(dropped))
                if t.status == TxStatus.REPLACED}
    assert len(gone) <= 1
    assert mined(settings, list(dropped)) == dropped - gone, \
        "the dropped transfers were mined as recorded (but one whose nonce was taken)"
    from tests.e2e.chain_check import read_ledger

    assert read_ledger(settings).balances == expected
