"""``devnet down`` drops the PostgreSQL schemas its ``up`` made, and only those.

Each devnet runs the custodial engine embedded (no worker processes, no Redis) on PostgreSQL,
which is the cheapest devnet that makes a schema. The unreachable-database case uses a private
cluster (tests/pg.py) it can stop, never the shared server.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

from cic_devnet._pgschemas import SCHEMAS_FILE
from cic_devnet._pids import runs
from cic_devnet.custodial.devnet import EngineOptions
from cic_devnet.devnet import devnet_down, devnet_up
from tests.helpers import run_cli
from tests.pg import PG_URL, drop_schema, private_postgres


def schema_exists(name: str, url: str = PG_URL) -> bool:
    import psycopg2

    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (name,))
            return cur.fetchone() is not None
    finally:
        conn.close()


def on_postgres(url: str = PG_URL, **kw: object) -> EngineOptions:
    return EngineOptions(embedded=True, db_url=url, **kw)  # type: ignore[arg-type]


def test_down_drops_the_schema_up_made_and_a_second_down_is_fine(tmp_path: Path) -> None:
    directory = tmp_path / "dn"
    devnet = devnet_up(directory, custodial=True, custodial_options=on_postgres())
    name = devnet.info["custodial"]["db_schema"]
    try:
        assert name.startswith("devnet_") and schema_exists(name)
        record = directory / SCHEMAS_FILE
        assert stat.S_IMODE(record.stat().st_mode) == 0o600  # the URL may hold a password
        assert [s["schema"] for s in json.loads(record.read_text())["schemas"]] == [name]
        devnet.stop()
        assert not schema_exists(name)
        assert not record.exists()
        assert devnet_down(directory) is False  # down again: nothing to stop, nothing to drop
    finally:
        drop_schema(name)


def test_a_configured_schema_is_never_dropped(tmp_path: Path, pg_schema: str) -> None:
    directory = tmp_path / "dn"
    devnet = devnet_up(directory, custodial=True,
                       custodial_options=on_postgres(schema=pg_schema))
    devnet.stop()
    assert devnet.info["custodial"]["db_schema"] == pg_schema
    assert schema_exists(pg_schema)  # the configuration's, not the devnet's
    assert not (directory / SCHEMAS_FILE).exists()


def test_a_devnet_with_a_state_file_keeps_its_schema_for_the_reload(tmp_path: Path) -> None:
    directory, state = tmp_path / "dn", tmp_path / "chain.json"
    devnet = devnet_up(directory, state=state, custodial=True, custodial_options=on_postgres())
    name = devnet.info["custodial"]["db_schema"]
    try:
        devnet.stop()
        assert schema_exists(name)  # the reloaded chain's custodial accounts live there
        again = devnet_up(directory, state=state, custodial=True,
                          custodial_options=on_postgres())
        again.stop()
        assert again.info["custodial"]["db_schema"] == name and schema_exists(name)
        assert [s["schema"] for s in json.loads(
            (directory / SCHEMAS_FILE).read_text())["schemas"]] == [name]  # still droppable
    finally:
        drop_schema(name)


def test_down_with_postgresql_unreachable_stops_the_devnet_and_says_how_to_drop(
        tmp_path: Path) -> None:
    directory = tmp_path / "dn"
    with private_postgres() as pg:
        devnet = devnet_up(directory, custodial=True, custodial_options=on_postgres(pg.url()))
        devnet.close()  # the embedded engine (this process's); anvil runs on
        name, pid = devnet.info["custodial"]["db_schema"], devnet.info["anvil"]["pid"]
        assert schema_exists(name, pg.url())
        pg.stop()
        first = run_cli("devnet", "down", "--devnet", str(directory))
        assert first.returncode == 0, first.stderr
        assert first.stdout.strip() == "devnet stopped"
        assert not runs(pid, "anvil")
        lines = first.stderr.strip().splitlines()
        assert len(lines) == 1, first.stderr
        assert f"left PostgreSQL schema {name}" in lines[0]
        assert f'DROP SCHEMA "{name}" CASCADE' in lines[0]
        pg.start()
        second = run_cli("devnet", "down", "--devnet", str(directory))
        assert second.returncode == 0, second.stderr
        assert second.stdout.strip() == "devnet was not running"
        assert second.stderr == ""
        assert not schema_exists(name, pg.url())
        assert not (directory / SCHEMAS_FILE).exists()
