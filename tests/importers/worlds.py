"""One world per registered importer for the conformance suite (test_conformance.py).

A world is what one importer needs to run for real -- its services (anvil, the custodial
engine's worker, the metadata server, the USSD gateway, the gateway's PostgreSQL table) and a
data directory made the way that importer expects one -- plus how to read back what the
importer left in its backend:

* :meth:`World.held` -- per user of a data directory, what the backend holds for it (an
  AccountsIndex entry, engine accounts and their transactions, documents, gateway rows);
* :meth:`World.expected` -- what it holds when every user of the directory was imported once;
* :meth:`World.counters` -- totals of the backend. Those named in ``per_user`` grow by exactly
  that much for every user imported, so a duplicate registration, account or document shows
  in them even where :meth:`held` could not tell it apart; a rerun with nothing to do moves
  none of them (eth: not even the signer's transaction count).

The services come from the shared fixtures (tests/conftest.py: ``module_devnet``, ``stack``,
``meta``, ``module_pg_schema``); :data:`WORLDS` builds each world from them:

========= ========================== ==================================== ===================
importer  services                   each user held once                  quarantine breaks
========= ========================== ==================================== ===================
eth       anvil                      AccountsIndex entry, new/ record     src/ person record
cic_eth   anvil, engine worker       one engine account per request id,   src/ person record
          (PostgreSQL schema, Redis  its register, gas and faucet
          queue)                     transactions once; registered, new/
cic_ussd  anvil, engine, metadata    one gateway row per phone, one       src/ person record
          server, USSD gateway       engine account ("ussd:PHONE");
          (``stack``)                registered, new/ record
cic_meta  metadata server (SQLite)   four documents, each at version 1    new/ person record
ussd-pins the gateway's accounts     one row per phone: target, active,   pins.csv row
          table (PostgreSQL schema)  seeded language, the pins.csv hash   (missing)
ussd-data as ussd-pins               as ussd-pins, no PIN hash            new/ record
                                                                          (missing)
========= ========================== ==================================== ===================

cic_meta, ussd-pins and ussd-data read no src/ record, so the quarantine scenario breaks the
per-user record each does read (:attr:`World.corruption` says which and why).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cic_devnet.devnet import Devnet
from cic_devnet.meta.process import MetaServerProcess
from cic_seeding.chain.connect import connect
from cic_seeding.chain.registry import ACCOUNTS_INDEX, CicNetwork
from cic_seeding.config import Settings
from cic_seeding.datadir import DataDir, UserRow
from cic_seeding.generate.keys import preferred_language
from cic_seeding.meta.documents import DocumentSource
from cic_seeding.state import norm
from cic_seeding.ussd.accounts import ACTIVE
from cic_seeding.ussd.pins import write_pins
from tests.conftest import devnet_settings
from tests.custodial.world import make_data
from tests.e2e.procs import clean_env, files_in, seed_args
from tests.faults.kills import Probe, state_count, versions
from tests.meta.test_importer import imported_datadir
from tests.pg import PG_URL, sql_in
from tests.ussd.world import PIN_ROUNDS, Stack

#: Engine transactions one custodial account comes with (cic_eth: asked for in the request).
ACCOUNT_TXS = {"register": 1, "gas": 1, "faucet": 1}


@dataclass
class World:
    """An importer's services and data, and what its backend holds."""

    name: str
    #: Users of each data directory, and users per batch (several batches in flight).
    users: int
    batch_size: int
    #: What the quarantine scenario breaks for one user: the per-user record this importer
    #: reads (and why that one, where it is not the ``src/`` person record).
    corruption: str
    #: counter -> how much it grows for each user imported (see :meth:`counters`)
    per_user: Mapping[str, int] = field(default_factory=dict)

    def make_data(self, root: Path, seed: int) -> DataDir:
        """A data directory of ``users`` users, ready for this importer."""
        return DataDir(make_data(root, self.users, seed))

    def settings(self, data: DataDir) -> Settings:
        raise NotImplementedError

    def cli(self, data: DataDir) -> tuple[list[str], dict[str, str]]:
        """``cic-seed import NAME`` arguments and environment for ``data``."""
        raise NotImplementedError

    def counters(self) -> dict[str, int]:
        raise NotImplementedError

    def held(self, data: DataDir) -> dict[str, Any]:
        """user address (0x lower) -> what the backend holds for it; users it holds nothing
        of are left out."""
        raise NotImplementedError

    def expected(self, data: DataDir, targets: Mapping[str, str]) -> dict[str, Any]:
        """:meth:`held` when each of ``targets`` (user -> its target, 0x lower: the state
        store's) was imported exactly once."""
        raise NotImplementedError

    def extra_state(self, data: DataDir) -> Any:
        """More of the backend a rerun must leave as it is (timestamps of rows ...)."""
        return None

    def corrupt(self, data: DataDir, victim: UserRow) -> str:
        """Break ``victim``'s :attr:`corruption`; returns what the failure reason must say."""
        path = data.src.path(victim.address)
        path.write_text('{"vcard": "BEGIN:VCARD", truncated')
        return f"person record {path} is not valid JSON"

    def probes(self, data: DataDir) -> list[Probe]:
        """What a run makes observable as it goes, for kill points (counts of users)."""
        return [Probe("users submitted",
                      lambda: state_count(data.root, self.name, "submitted", "confirmed")),
                Probe("users confirmed", lambda: state_count(data.root, self.name, "confirmed"))]


def _phones(data: DataDir) -> dict[str, str]:
    """phone -> user address (0x lower)."""
    return {u.phone: norm(u.address) for u in data.users()}


def _index_entries(network: CicNetwork) -> int:
    return int(network.client.call(network.accounts_index, ACCOUNTS_INDEX.fn("entryCount")))


def _registered(network: CicNetwork, addresses: list[str]) -> dict[str, bool]:
    have = network.client.call_many([(network.accounts_index, ACCOUNTS_INDEX.fn("have"), (a,))
                                     for a in addresses])
    return dict(zip(addresses, have, strict=True))


# --- eth: sovereign, AccountsIndex.add from the signer ------------------------------------------


@dataclass
class EthWorld(World):
    devnet: Devnet | None = None

    def settings(self, data: DataDir) -> Settings:
        assert self.devnet is not None
        return devnet_settings(self.devnet, data.root, batch_size=self.batch_size)

    def cli(self, data: DataDir) -> tuple[list[str], dict[str, str]]:
        assert self.devnet is not None
        return (seed_args(data.root, self.devnet, "--batch-size", str(self.batch_size)),
                clean_env())

    def _network(self, data: DataDir) -> CicNetwork:
        return connect(self.settings(data))

    def counters(self) -> dict[str, int]:
        assert self.devnet is not None
        network = connect(devnet_settings(self.devnet, Path("unused")))
        assert network.client.signer is not None
        nonce = network.client.rpc.call("eth_getTransactionCount",
                                        [network.client.signer.address, "latest"])
        return {"AccountsIndex entries": _index_entries(network),
                "signer transactions": int(nonce, 16)}  # a rerun resends nothing

    def held(self, data: DataDir) -> dict[str, Any]:
        users = [norm(u.address) for u in data.users()]
        have = _registered(self._network(data), users)
        return {a: ("registered", data.new.has(a)) for a in users if have[a]}

    def expected(self, data: DataDir, targets: Mapping[str, str]) -> dict[str, Any]:
        return {u: ("registered", True) for u in targets}

    def probes(self, data: DataDir) -> list[Probe]:
        return [*super().probes(data),
                Probe("keyfiles", lambda: files_in(data.root / "keystore")),
                Probe("tx/ files", lambda: files_in(data.root / "tx"))]


# --- cic_eth: custodial, the engine makes and registers the account ------------------------------


@dataclass
class CicEthWorld(World):
    stack: Stack | None = None

    def settings(self, data: DataDir) -> Settings:
        assert self.stack is not None
        return self.stack.harness.settings(data.root, batch_size=self.batch_size)

    def cli(self, data: DataDir) -> tuple[list[str], dict[str, str]]:
        assert self.stack is not None
        harness = self.stack.harness
        return (seed_args(data.root, self.stack.devnet),
                clean_env(CIC_CUSTODIAL_BROKER_URL=harness.broker_url,
                          CIC_CUSTODIAL_QUEUE=harness.setup.queue,
                          CIC_BATCH_SIZE=str(self.batch_size)))

    def counters(self) -> dict[str, int]:
        assert self.stack is not None
        harness = self.stack.harness
        mine = "request_id NOT LIKE 'ussd:%%'"  # the gateway's accounts are not ours
        kinds = ", ".join(f"'{k}'" for k in ACCOUNT_TXS)
        return {"engine accounts": harness.count(f"SELECT count(*) FROM accounts WHERE {mine}"),
                "engine transactions": harness.count(
                    f"SELECT count(*) FROM txs WHERE {mine} AND kind IN ({kinds})"),
                "AccountsIndex entries": _index_entries(connect(
                    harness.settings(Path("unused")), signer=False))}

    def held(self, data: DataDir) -> dict[str, Any]:
        assert self.stack is not None
        users = [norm(u.address) for u in data.users()]
        accounts: dict[str, list[str]] = {}
        for address, request_id in self.stack.harness.sql(
                "SELECT address, request_id FROM accounts WHERE request_id = ANY(%s)", (users,)):
            accounts.setdefault(request_id, []).append(address.lower())
        kinds: dict[str, Counter[str]] = {}
        for request_id, kind in self.stack.harness.sql(
                "SELECT request_id, kind FROM txs WHERE request_id = ANY(%s)", (users,)):
            kinds.setdefault(request_id, Counter())[kind] += 1
        targets = [t for ts in accounts.values() for t in ts]
        have = _registered(connect(self.settings(data), signer=False), targets)
        return {u: (sorted(accounts[u]), dict(kinds.get(u, {})),
                    [have[t] and data.new.has(t) for t in sorted(accounts[u])])
                for u in users if u in accounts}

    def expected(self, data: DataDir, targets: Mapping[str, str]) -> dict[str, Any]:
        return {u: ([t], ACCOUNT_TXS, [True]) for u, t in targets.items()}

    def probes(self, data: DataDir) -> list[Probe]:
        assert self.stack is not None
        harness = self.stack.harness
        users = [norm(u.address) for u in data.users()]
        return [*super().probes(data),
                Probe("engine accounts", lambda: int(harness.sql(
                    "SELECT count(*) FROM accounts WHERE request_id = ANY(%s)", (users,))[0][0])),
                Probe("new/ records", lambda: files_in(data.root / "new"))]


# --- cic_ussd: every user registers itself over the USSD gateway's menus -------------------------


@dataclass
class CicUssdWorld(World):
    stack: Stack | None = None

    def settings(self, data: DataDir) -> Settings:
        assert self.stack is not None
        return self.stack.settings(data.root, batch_size=self.batch_size, ussd_concurrency=4,
                                   ussd_max_wait=60)

    def cli(self, data: DataDir) -> tuple[list[str], dict[str, str]]:
        assert self.stack is not None
        s = self.stack
        return (seed_args(data.root, s.devnet),
                clean_env(CIC_CUSTODIAL_BROKER_URL=s.harness.broker_url,
                          CIC_CUSTODIAL_QUEUE=s.harness.setup.queue, CIC_META_URL=s.meta.url,
                          CIC_META_TOKEN=s.meta.token, CIC_USSD_URL=s.gateway.url,
                          CIC_USSD_SERVICE_CODE=s.gateway.service_code,
                          CIC_BATCH_SIZE=str(self.batch_size), CIC_USSD_CONCURRENCY="4",
                          CIC_USSD_MAX_WAIT="60"))

    def counters(self) -> dict[str, int]:
        assert self.stack is not None
        s = self.stack
        return {"gateway accounts": int(s.sql("SELECT count(*) FROM ussd_accounts")[0][0]),
                "engine accounts": s.harness.count(
                    "SELECT count(*) FROM accounts WHERE request_id LIKE 'ussd:%%'"),
                "AccountsIndex entries": _index_entries(connect(
                    s.settings(Path("unused")), signer=False))}

    def held(self, data: DataDir) -> dict[str, Any]:
        assert self.stack is not None
        phones = _phones(data)
        rows: dict[str, list[str | None]] = {}
        for phone, address in self.stack.sql(
                "SELECT phone, address FROM ussd_accounts WHERE phone = ANY(%s)", (list(phones),)):
            rows.setdefault(phones[phone], []).append(address and address.lower())
        accounts: dict[str, list[str]] = {}
        for address, request_id in self.stack.harness.sql(
                "SELECT address, request_id FROM accounts WHERE request_id = ANY(%s)",
                ([f"ussd:{p}" for p in phones],)):
            accounts.setdefault(phones[request_id.removeprefix("ussd:")], []).append(
                address.lower())
        users = sorted(set(rows) | set(accounts))
        targets = sorted({t for u in users for t in accounts.get(u, [])})
        have = _registered(connect(self.settings(data), signer=False), targets)
        return {u: (rows.get(u, []), sorted(accounts.get(u, [])),
                    [have[t] and data.new.has(t) for t in sorted(accounts.get(u, []))])
                for u in users}

    def expected(self, data: DataDir, targets: Mapping[str, str]) -> dict[str, Any]:
        return {u: ([t], [t], [True]) for u, t in targets.items()}

    def probes(self, data: DataDir) -> list[Probe]:
        assert self.stack is not None
        s, phones = self.stack, list(_phones(data))
        return [*super().probes(data),
                Probe("gateway accounts", lambda: int(s.sql(
                    "SELECT count(*) FROM ussd_accounts WHERE phone = ANY(%s)", (phones,))[0][0]))]


# --- cic_meta: four documents per imported user on the metadata server ---------------------------


@dataclass
class MetaWorld(World):
    server: MetaServerProcess | None = None

    def make_data(self, root: Path, seed: int) -> DataDir:
        """Users as a chain importer leaves them (``new/`` records; every third custodial)."""
        return imported_datadir(root / "data", count=self.users, seed=seed)

    def settings(self, data: DataDir) -> Settings:
        assert self.server is not None
        return Settings(data_dir=str(data.root), meta_url=self.server.url,
                        meta_token=self.server.token, batch_size=self.batch_size,
                        meta_concurrency=2)

    def cli(self, data: DataDir) -> tuple[list[str], dict[str, str]]:
        assert self.server is not None
        return (["--dir", str(data.root)],
                clean_env(CIC_META_URL=self.server.url, CIC_META_TOKEN=self.server.token,
                          CIC_BATCH_SIZE=str(self.batch_size), CIC_META_CONCURRENCY="2"))

    def counters(self) -> dict[str, int]:
        assert self.server is not None
        docs = versions(self.server)
        return {"documents": len(docs), "document writes": sum(docs.values())}

    def _pointers(self, data: DataDir) -> dict[str, dict[str, str]]:
        """user -> {pointer: kind} of the documents due (users whose record reads)."""
        found, _ = DocumentSource(data).documents(list(data.users()))
        return {norm(a): {p: kind for kind, p, _ in docs.items()} for a, docs in found.items()}

    def held(self, data: DataDir) -> dict[str, Any]:
        assert self.server is not None
        docs = versions(self.server)
        out = {}
        for user, pointers in self._pointers(data).items():
            have = {kind: docs[p] for p, kind in pointers.items() if p in docs}
            if have:
                out[user] = have
        return out

    def expected(self, data: DataDir, targets: Mapping[str, str]) -> dict[str, Any]:
        return {u: {"person": 1, "phone": 1, "custom": 1, "preferences": 1} for u in targets}

    def corrupt(self, data: DataDir, victim: UserRow) -> str:
        # victim.index % 3 != 0: a sovereign user, its new/ record keyed by its own address
        assert data.new.has(victim.address)
        data.new.path(victim.address).write_text('{"vcard": "BEGIN:VCARD", truncated')
        return "its new/ record cannot be read"

    def probes(self, data: DataDir) -> list[Probe]:
        assert self.server is not None
        server = self.server
        pointers = {p for ps in self._pointers(data).values() for p in ps}
        return [*super().probes(data),
                Probe("users' documents",
                      lambda: sum(1 for p in versions(server) if p in pointers) // 4)]


# --- ussd-pins / ussd-data: gateway accounts of users another importer made ----------------------


@dataclass
class UssdAccountsWorld(World):
    schema: str | None = None
    with_pins: bool = True

    def make_data(self, root: Path, seed: int) -> DataDir:
        """Users a chain importer made (``new/`` records) and, for ussd-pins, pins.csv."""
        data = imported_datadir(root / "data", count=self.users, seed=seed)
        if self.with_pins:
            write_pins(data.root, rounds=PIN_ROUNDS)
        return data

    def settings(self, data: DataDir) -> Settings:
        return Settings(data_dir=str(data.root), ussd_db_url=PG_URL,
                        ussd_db_schema=self.schema, batch_size=self.batch_size)

    def cli(self, data: DataDir) -> tuple[list[str], dict[str, str]]:
        assert self.schema is not None
        return (["--dir", str(data.root)],
                clean_env(CIC_USSD_DB_URL=PG_URL, CIC_USSD_DB_SCHEMA=self.schema,
                          CIC_BATCH_SIZE=str(self.batch_size)))

    def _sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        assert self.schema is not None
        exists = sql_in(self.schema, "SELECT to_regclass('ussd_accounts') IS NOT NULL")
        return sql_in(self.schema, query, params) if exists[0][0] else []

    def counters(self) -> dict[str, int]:
        rows = self._sql("SELECT count(*) FROM ussd_accounts")
        return {"gateway accounts": int(rows[0][0]) if rows else 0}

    def _rows(self, data: DataDir) -> list[tuple[Any, ...]]:
        return self._sql("SELECT phone, address, status, language, pin_hash, updated_at "
                         "FROM ussd_accounts WHERE phone = ANY(%s)", (list(_phones(data)),))

    def held(self, data: DataDir) -> dict[str, Any]:
        phones = _phones(data)
        out: dict[str, list[tuple[Any, ...]]] = {}
        for phone, address, status, language, pin_hash, _ in self._rows(data):
            out.setdefault(phones[phone], []).append((address, status, language, pin_hash))
        return out

    def expected(self, data: DataDir, targets: Mapping[str, str]) -> dict[str, Any]:
        seed = data.manifest().seed
        users = {norm(u.address): u for u in data.users()}
        pins = self._pins(data)
        return {u: [(t, ACTIVE, preferred_language(seed, users[u].index),
                     pins[users[u].phone] if self.with_pins else "")]
                for u, t in targets.items()}

    def extra_state(self, data: DataDir) -> Any:
        return sorted((r[0], r[5]) for r in self._rows(data))  # phone, updated_at

    def _pins(self, data: DataDir) -> dict[str, str]:
        if not self.with_pins:
            return {}
        with (data.root / "pins.csv").open(newline="") as fh:
            return {phone: pin_hash for phone, _, pin_hash in csv.reader(fh)}

    def corrupt(self, data: DataDir, victim: UserRow) -> str:
        if self.with_pins:  # the victim's row leaves pins.csv
            path = data.root / "pins.csv"
            with path.open(newline="") as fh:
                rows = [r for r in csv.reader(fh) if r[0] != victim.phone]
            with path.open("w", newline="") as fh:
                csv.writer(fh).writerows(rows)
            return f"pins.csv has no PIN for {victim.phone}"
        assert data.new.has(victim.address)  # a sovereign user (index % 3 != 0)
        data.new.path(victim.address).unlink()
        return f"no new/ record holds phone {victim.phone}"

    def probes(self, data: DataDir) -> list[Probe]:
        return [*super().probes(data),
                Probe("gateway accounts", lambda: len(self._rows(data)))]


# --- the worlds, by importer name ---------------------------------------------------------------

SRC = "its src/ person record is not JSON"

#: importer name -> its world, built from the shared fixtures (``request.getfixturevalue``).
WORLDS: dict[str, Callable[[pytest.FixtureRequest], World]] = {
    "eth": lambda r: EthWorld(
        "eth", users=30, batch_size=5, corruption=SRC,
        per_user={"AccountsIndex entries": 1}, devnet=r.getfixturevalue("module_devnet")),
    "cic_eth": lambda r: CicEthWorld(
        "cic_eth", users=30, batch_size=5, corruption=SRC,
        per_user={"engine accounts": 1, "engine transactions": sum(ACCOUNT_TXS.values()),
                  "AccountsIndex entries": 1}, stack=r.getfixturevalue("stack")),
    "cic_ussd": lambda r: CicUssdWorld(
        "cic_ussd", users=20, batch_size=5, corruption=SRC,
        per_user={"gateway accounts": 1, "engine accounts": 1, "AccountsIndex entries": 1},
        stack=r.getfixturevalue("stack")),
    "cic_meta": lambda r: MetaWorld(
        "cic_meta", users=30, batch_size=3,
        corruption="its new/ person record is not JSON (cic_meta reads new/, not src/)",
        per_user={"documents": 4, "document writes": 4}, server=r.getfixturevalue("meta")),
    "ussd-pins": lambda r: UssdAccountsWorld(
        "ussd-pins", users=40, batch_size=2,
        corruption="its pins.csv row is missing (ussd-pins reads pins.csv and new/, no src/ "
                   "record; an unreadable new/ record stops its whole run, not one user)",
        per_user={"gateway accounts": 1}, schema=r.getfixturevalue("module_pg_schema")),
    "ussd-data": lambda r: UssdAccountsWorld(
        "ussd-data", users=40, batch_size=2, with_pins=False,
        corruption="its new/ record is missing (ussd-data reads new/, no src/ record; an "
                   "unreadable new/ record stops its whole run, not one user)",
        per_user={"gateway accounts": 1}, schema=r.getfixturevalue("module_pg_schema")),
}
