"""The PostgreSQL schemas a devnet made, recorded so ``devnet down`` drops them and nothing else.

``devnet up`` gives the custodial engine and the USSD gateway a fresh schema each (a name
nobody used) unless one is configured. Before such a schema is created, :func:`record` writes
it into ``DIR/pg-schemas.json`` (mode 0600: the database URL may hold a password); a schema
that was configured, or that a reloaded devnet carries over, is never written there. Only what
that file names is ever dropped, and an entry leaves the file once its schema is gone, so
``devnet down`` can run any number of times: a schema PostgreSQL did not let it drop stays
recorded for the next one, and is named in one line with the command that drops it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cic_seeding.custodial import redact
from cic_seeding.datadir.store import atomic_write

log = logging.getLogger(__name__)

SCHEMAS_FILE = "pg-schemas.json"
#: How long a DROP waits for a lock a leftover connection holds before it gives up.
LOCK_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class Schema:
    """One schema the devnet made: where (the full URL), its name and whose it is."""

    url: str = field(repr=False)
    schema: str
    service: str

    def where(self) -> str:
        return f"schema {self.schema} ({self.service}) in {redact(self.url)}"

    def drop_command(self) -> str:
        return f"psql '{redact(self.url)}' -c 'DROP SCHEMA \"{self.schema}\" CASCADE'"


@dataclass
class Cleanup:
    """What :func:`drop_recorded` did: schemas dropped, kept on purpose, and left (with why)."""

    dropped: list[Schema] = field(default_factory=list)
    kept: list[Schema] = field(default_factory=list)
    left: list[tuple[Schema, str]] = field(default_factory=list)


def recorded(directory: Path) -> list[Schema]:
    """The schemas ``directory``'s devnet made and has not dropped yet."""
    path = directory / SCHEMAS_FILE
    if not path.is_file():
        return []
    return [Schema(**entry) for entry in json.loads(path.read_text())["schemas"]]


def _write(directory: Path, schemas: list[Schema]) -> None:
    path = directory / SCHEMAS_FILE
    if not schemas:
        path.unlink(missing_ok=True)
        return
    doc = {"schemas": [asdict(s) for s in schemas]}
    atomic_write(path, (json.dumps(doc, indent=2) + "\n").encode(), 0o600)


def record(directory: Path, url: str, schema: str, service: str) -> None:
    """Note that the devnet is about to create ``schema`` in ``url`` (call it first: a crash
    between the two then leaves a record of a schema that may not exist, which dropping
    takes in its stride, never a schema nobody knows of)."""
    made = Schema(url, schema, service)
    schemas = recorded(directory)
    if made not in schemas:
        _write(directory, [*schemas, made])


def drop_recorded(directory: Path, *, keep: bool = False) -> Cleanup:
    """Drop every schema ``directory``'s devnet recorded; ``keep``: drop none (a devnet with a
    state file reloads its chain, whose custodial accounts live in these schemas).

    Never raises for a database that does not answer or refuses: that schema stays recorded
    and is logged in one line saying how to drop it by hand."""
    out = Cleanup()
    schemas = recorded(directory)
    if keep:
        for s in schemas:
            log.info("kept PostgreSQL %s: the state file's next `devnet up --state` uses it; "
                     "drop it with %s", s.where(), s.drop_command())
        out.kept = schemas
        return out
    for s in schemas:
        reason = _drop(s)
        if reason is None:
            out.dropped.append(s)
            log.info("dropped PostgreSQL %s", s.where())
        else:
            out.left.append((s, reason))
            log.warning("left PostgreSQL %s: %s; drop it with %s (or run `cic-seed devnet "
                        "down --devnet %s` again)", s.where(), reason, s.drop_command(),
                        directory)
    _write(directory, [s for s, _ in out.left])
    return out


def _drop(s: Schema) -> str | None:
    """None once ``s`` is gone (dropped now, or already); else why not, in a few words."""
    try:
        import psycopg2
        from psycopg2 import sql
    except ImportError:
        return "psycopg2 is not installed (pip install 'cic-seeding[custodial]')"
    try:
        conn = psycopg2.connect(s.url, connect_timeout=5)
    except psycopg2.Error as exc:
        return f"PostgreSQL did not answer ({_words(exc)})"
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"SET lock_timeout = {LOCK_TIMEOUT_MS}")
            cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(s.schema)))
    except psycopg2.Error as exc:
        return f"PostgreSQL refused ({_words(exc)})"
    finally:
        conn.close()
    return None


def _words(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
