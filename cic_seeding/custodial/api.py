"""A client of the custodial engine, speaking only its API: task names, arguments, replies.

The engine is a service (the devnet runs one: ``cic_devnet.custodial``); this module knows it
the way a client of the CIC custodial API did: it sends Celery tasks *by name* to the engine's
queue and takes the replies from a Redis channel it names (the callback), falling back to the
Celery result backend for a reply it missed (e.g. while Redis restarted). The library never
imports the engine.

The API (queue: ``custodial_queue``; every task also takes ``callback``, a channel name)::

    cic_custodial.account.create(request_id, gas_gift=0, faucet=False)
        -> {"address", "request_id", "created": bool, "txs": {kind: tx id}}
        one account per request_id: a repeated request returns the same account
    cic_custodial.account.create_many(requests)
        requests: [{"request_id", "gas_gift"?, "faucet"?}, ...] (at most 1000)
        -> {"accounts": [one reply per request, in their order: as account.create's, or
                         {"request_id", "error"} for a request that is not one]}
        the same, many accounts in one task and one database transaction; an engine that
        offers it lists it in its status' "tasks" (an older engine: account.create per user)
    cic_custodial.account.have(addresses)            -> {"have": {address: bool}}
    cic_custodial.account.balance(address, token=None)
        -> {"address", "token", "symbol", "decimals", "balance", "native"}
    cic_custodial.token.transfer(sender, recipient, amount, token=None, request_id=None)
        -> {"tx_id", "tx_hash", "nonce", "status"}
    cic_custodial.tx.status(tx_ids)
        -> {"txs": [{"id", "status", "tx_hash", "raw", ...}]}
        raw (mined ones): the transaction as last signed, the mined one when it hashes to
        tx_hash
    cic_custodial.engine.status()
        -> {"signer", "chain_id", "registry", "accounts_index", "accounts", "queue",
            "tasks": [the task names it answers]}

A callback is one JSON message published on the named channel when the task has finished::

    {"task_id": ..., "task": ..., "status": "ok", "result": {...}}
    {"task_id": ..., "task": ..., "status": "error",
     "error": {"type": ..., "message": ..., "transient": bool}}

Addresses are 0x lower-case hex in requests and replies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cic_seeding.config import Settings
from cic_seeding.errors import CustodialReplyError

TASK_CREATE = "cic_custodial.account.create"
TASK_CREATE_MANY = "cic_custodial.account.create_many"
TASK_HAVE = "cic_custodial.account.have"
TASK_BALANCE = "cic_custodial.account.balance"
TASK_TRANSFER = "cic_custodial.token.transfer"
TASK_TX_STATUS = "cic_custodial.tx.status"
TASK_STATUS = "cic_custodial.engine.status"

DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
DEFAULT_QUEUE = "cic_custodial"


def endpoint(settings: Settings) -> tuple[str, str]:
    """``(broker URL, queue)`` of the engine: the settings (a devnet's among them), else the
    defaults."""
    return (settings.custodial_broker_url or DEFAULT_BROKER,
            settings.custodial_queue or DEFAULT_QUEUE)


def redact(url: str) -> str:
    """``url`` without its password."""
    head, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    auth, _, host = rest.rpartition("@")
    user = auth.split(":", 1)[0]
    return f"{head}://{user}:****@{host}" if ":" in auth else url


@dataclass(frozen=True)
class Reply:
    """The engine's answer to one task: ``result`` if ``ok``, else ``error`` (its words)."""

    task_id: str
    task: str
    ok: bool
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    transient: bool = False


def parse_reply(message: Any) -> Reply:
    """A callback message as a Reply; CustodialReplyError for anything else."""
    try:
        doc = json.loads(message) if isinstance(message, (str, bytes)) else message
    except ValueError:
        raise CustodialReplyError(f"a reply that is not JSON: {str(message)[:200]!r}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("task_id"), str):
        raise CustodialReplyError(f"a reply without a task id: {str(message)[:200]!r}")
    task_id, task, status = doc["task_id"], str(doc.get("task", "")), doc.get("status")
    if status == "ok" and isinstance(doc.get("result"), dict):
        return Reply(task_id, task, True, doc["result"])
    if status == "error" and isinstance(doc.get("error"), dict):
        err = doc["error"]
        return Reply(task_id, task, False, error=f"{err.get('type', 'Error')}: "
                     f"{err.get('message', '')}", transient=bool(err.get("transient")))
    raise CustodialReplyError(f"task {task_id} ({task or 'unknown task'}) got a reply this "
                              f"client does not understand (status {status!r}): "
                              f"{str(message)[:200]!r}",
                              hint="are the engine and this cic-seeding the same version?")


def task_id_of(data: Any) -> str | None:
    try:
        doc = json.loads(data)
    except (TypeError, ValueError):
        return None
    task_id = doc.get("task_id") if isinstance(doc, dict) else None
    return task_id if isinstance(task_id, str) else None
