"""The PostgreSQL the tests share: its URL, fresh schemas, and queries in one; and a private
cluster for the tests that stop or restart PostgreSQL.

Every test that writes to PostgreSQL does it in a schema of its own, made fresh (a name nobody
used) and dropped afterwards, so any number of tests run beside each other on one server. The
fixtures ``pg_schema`` (one test) and ``module_pg_schema`` (one module) in ``tests/conftest.py``
are :func:`fresh_schema`; code that needs several schemas (the USSD stack) uses it directly.

A test that restarts PostgreSQL must never touch the shared server (other tests and people use
it): :class:`PrivatePostgres` is a cluster of its own (initdb, pg_ctl) on a free port in a
temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from glob import glob
from pathlib import Path
from typing import Any

from tests.helpers import free_port

PG_URL = os.environ.get("CIC_TEST_PG_URL",
                        "postgresql://postgres@127.0.0.1:5432/cic_seeding_test")


def schema_name(prefix: str = "t") -> str:
    """A schema name nobody used: ``PREFIX_`` and 12 hex digits (a lower-case identifier)."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def drop_schema(name: str) -> None:
    """Drop schema ``name`` with everything in it (nothing if it does not exist)."""
    import psycopg2

    conn = psycopg2.connect(PG_URL)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        conn.close()


@contextmanager
def fresh_schema(prefix: str = "t") -> Iterator[str]:
    """The name of a schema nobody used (whoever uses it first creates it), dropped after."""
    name = schema_name(prefix)
    try:
        yield name
    finally:
        drop_schema(name)


def sql_in(schema: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of ``query`` run in schema ``schema`` (committed)."""
    import psycopg2

    conn = psycopg2.connect(PG_URL)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(f'SET search_path TO "{schema}"')
            cur.execute(query, params)
            return list(cur.fetchall()) if cur.description else []
    finally:
        conn.close()


# --- a private cluster, for the tests that stop or restart PostgreSQL ----------------------


def _pg_binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob(f"/usr/lib/postgresql/*/bin/{name}"),
                                                   reverse=True)), None)
    if found is None:
        raise AssertionError(f"{name} not found (on PATH or under /usr/lib/postgresql/*/bin); "
                             "install the PostgreSQL server package")
    return found


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster of our own on a free port (initdb, pg_ctl), so restarting it
    disturbs nobody. Run as the ``postgres`` user when the tests run as root (PostgreSQL
    refuses root)."""

    directory: Path
    port: int
    user: str | None

    @classmethod
    def create(cls) -> PrivatePostgres:
        user = "postgres" if os.geteuid() == 0 else None
        directory = Path(tempfile.mkdtemp(prefix="cic-pg-"))
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(directory, entry.pw_uid, entry.pw_gid)
        pg = cls(directory, free_port(), user)
        pg._run("initdb", "-D", str(directory / "data"), "-U", "postgres", "--auth=trust",
                "-E", "UTF8", "--no-sync")
        pg._ctl("start", "-o", pg._options())
        return pg

    def _options(self) -> str:
        return (f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c full_page_writes=off")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every connection is cut, the server comes back."""
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: every connection is cut; nothing answers until start."""
        self._ctl("stop", "-m", "fast")

    def start(self) -> None:
        """Start the stopped cluster again (same port, same data)."""
        self._ctl("start", "-o", self._options())

    def create_database(self, name: str) -> str:
        self.sql("postgres", f'CREATE DATABASE "{name}"')
        return self.url(name)

    def sql(self, database: str, query: str,
            params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import psycopg2

        conn = psycopg2.connect(self.url(database))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(query, params)
                return list(cur.fetchall()) if cur.description else []
        finally:
            conn.close()

    def count(self, database: str, query: str) -> int:
        """A count, 0 while the table does not exist yet or the server restarts."""
        import psycopg2

        try:
            return int(self.sql(database, query)[0][0])  # type: ignore[call-overload]
        except psycopg2.Error:
            return 0

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._ctl("stop", "-m", "immediate")
        pid_file = self.directory / "data" / "postmaster.pid"
        if pid_file.is_file():  # pg_ctl could not stop it: by pid
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        shutil.rmtree(self.directory, ignore_errors=True)

    def _ctl(self, *args: str) -> None:
        data = self.directory / "data"
        self._run("pg_ctl", "-D", str(data), "-l", str(self.directory / "server.log"), "-w",
                  "-t", "60", *args)

    def _run(self, name: str, *args: str) -> None:
        result = subprocess.run([_pg_binary(name), *args], user=self.user, cwd=self.directory,
                                capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            log = self.directory / "server.log"
            raise subprocess.CalledProcessError(
                result.returncode, result.args,
                result.stdout, result.stderr + (log.read_text() if log.is_file() else ""))


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A :class:`PrivatePostgres` for the block, destroyed (stopped, files removed) after."""
    pg = PrivatePostgres.create()
    try:
        yield pg
    finally:
        pg.destroy()
