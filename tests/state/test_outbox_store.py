"""The outbox table on every backend (SQLite and PostgreSQL), and the migration that adds it
to a store an older version made (schema 1): the older rows keep working."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cic_seeding.state import OPEN_TX, OutTx, StateStore, Status, TxStatus, open_state_store
from cic_seeding.state._sql import SCHEMA, SCHEMA_VERSION

CHAIN = "8996-abcdef"
S1 = "0x" + "Aa" * 20
S2 = "0x" + "bb" * 20


def tx(n: int, sender: str = S1, *, family: str | None = None, owner: str = "0xUSER",
       purpose: str = "fund", chain: str = CHAIN) -> OutTx:
    h = f"0x{n:064x}"
    return OutTx(h, chain, sender, n, f"0xraw{n}", purpose, owner, family or h)


def test_record_query_and_mark(store: StateStore) -> None:
    store.record_txs([tx(1), tx(2), tx(3, S2), tx(4, chain="other")])
    store.record_txs([tx(1)])  # the same bytes again: left alone
    rows = store.txs(CHAIN)
    assert [(t.sender, t.nonce) for t in rows] == [(S1.lower(), 1), (S1.lower(), 2),
                                                   (S2, 3)]
    assert rows[0].owner == "0xuser" and rows[0].status == TxStatus.SIGNED
    assert rows[0].sends == 0 and rows[0].sent_at == 0.0

    store.mark_txs_sent([tx(1).tx_hash, tx(2).tx_hash], 1234.5)
    store.mark_txs_sent([tx(1).tx_hash], 2000.0)
    (one,) = store.txs(CHAIN, hashes=[tx(1).tx_hash])
    assert one.status == TxStatus.SENT and one.sends == 2 and one.sent_at == 2000.0
    store.mark_txs([(tx(2).tx_hash, TxStatus.MINED, 77, None),
                    (tx(3).tx_hash, TxStatus.REPLACED, None, "nonce 3 used")])
    assert [t.nonce for t in store.txs(CHAIN, statuses=OPEN_TX)] == [1]
    assert [t.nonce for t in store.txs(CHAIN, sender=S1, min_nonce=2)] == [2]
    (mined,) = store.txs(CHAIN, statuses=[TxStatus.MINED])
    assert mined.block_number == 77
    (gone,) = store.txs(CHAIN, owners=["0xUSER"], statuses=[TxStatus.REPLACED])
    assert gone.reason == "nonce 3 used"
    assert store.tx_counts(CHAIN) == {("fund", TxStatus.SENT): 1, ("fund", TxStatus.MINED): 1,
                                      ("fund", TxStatus.REPLACED): 1}


def test_families_and_owners_in_large_lists(store: StateStore) -> None:
    first = tx(10)
    bump = OutTx("0x" + "f" * 64, CHAIN, S1, 10, "0xbump", "fund", "0xuser", first.tx_hash)
    store.record_txs([first, bump] + [tx(100 + i, owner=f"o{i}") for i in range(1200)])
    family = store.txs(CHAIN, families=[first.tx_hash.upper().replace("0X", "0x")])
    assert [t.tx_hash for t in family] == [first.tx_hash, bump.tx_hash]
    owners = store.txs(CHAIN, owners=[f"o{i}" for i in range(1200)], purpose="fund")
    assert len(owners) == 1200
    assert len(store.txs(CHAIN, hashes=[t.tx_hash for t in owners], limit=7)) == 7


def test_a_schema_1_store_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    outbox_at = next(i for i, sql in enumerate(SCHEMA) if "outbox" in sql)
    for sql in SCHEMA[:outbox_at]:  # what version 1 made
        conn.execute(sql.format(serial="INTEGER PRIMARY KEY AUTOINCREMENT"))
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
    conn.execute("INSERT INTO users (importer, address, idx, status, created_at, updated_at) "
                 "VALUES ('eth', '0xabc', 0, 'confirmed', 1, 1)")
    conn.execute("INSERT INTO payments (importer, address, kind, amount, status, tx_hash, "
                 "raw_tx, nonce, created_at, updated_at) VALUES ('eth', '0xabc', 'fund', '5', "
                 "'submitted', '0x01', '0xf8', 3, 1, 1)")
    conn.commit()
    assert "outbox" not in {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()

    with open_state_store(url=str(path)) as store:
        assert store.addresses("eth", [Status.CONFIRMED]) == {"0xabc"}
        (p,) = store.payments("eth", [Status.SUBMITTED])
        assert (p.tx_hash, p.raw_tx, p.nonce) == ("0x01", "0xf8", 3)
        assert store.txs(CHAIN) == []
        store.record_txs([tx(1)])
        assert len(store.txs(CHAIN)) == 1
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == \
        (str(SCHEMA_VERSION),)
    conn.close()
