"""``python -m cic_devnet.ussd --port P --db URL ...``: serve the USSD gateway on 127.0.0.1.

Once the socket is bound, one line ``{"url": "http://127.0.0.1:PORT", "pid": N}`` goes to
stdout; logs go to stderr. The metadata server's write token is read from a file (``-``:
stdin) and never logged.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from cic_devnet.meta.__main__ import HOST, _bind, _read_token


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cic_devnet.ussd",
                                description="CIC USSD gateway (devnet service)")
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: a free one)")
    p.add_argument("--db", required=True, help="postgresql://... URL of the accounts table")
    p.add_argument("--schema", default=None, help="PostgreSQL schema (created if missing)")
    p.add_argument("--redis", required=True, help="redis://... URL for sessions")
    p.add_argument("--broker", required=True, help="redis://... URL of the custodial engine")
    p.add_argument("--queue", required=True, help="the custodial engine's Celery queue")
    p.add_argument("--meta-url", required=True, help="the metadata server's URL")
    p.add_argument("--meta-token-file", required=True,
                   help="file holding the metadata server's write token ('-': stdin)")
    p.add_argument("--chain-spec", required=True, help="engine:fork:network_id:common_name")
    p.add_argument("--service-code", action="append", required=True,
                   help="a service code this gateway serves (repeatable)")
    p.add_argument("--session-ttl", type=int, default=180, help="session expiry in seconds")
    p.add_argument("--pin-rounds", type=int, default=10, help="bcrypt cost of new PIN hashes")
    p.add_argument("--log-level", default="warning",
                   choices=["critical", "error", "warning", "info", "debug"])
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        token = _read_token(args.meta_token_file)
    except OSError as exc:
        print(f"error: cannot read {args.meta_token_file}: {exc.strerror}", file=sys.stderr)
        return 2

    import uvicorn

    from cic_devnet.ussd.app import create_app
    from cic_devnet.ussd.gateway import Gateway
    from cic_devnet.ussd.menus import Menus
    from cic_devnet.ussd.services import Activator, CustodialWallet
    from cic_devnet.ussd.sessions import Sessions
    from cic_seeding.meta.client import MetaClient
    from cic_seeding.records.chainspec import ChainSpec
    from cic_seeding.ussd.accounts import Accounts

    try:
        accounts = Accounts(args.db, args.schema)
        sessions = Sessions(args.redis, ttl=args.session_ttl)
        sessions.ping()
    except Exception as exc:  # any driver error: say which store, then exit
        print(f"error: cannot open the gateway's stores: {str(exc).strip()}", file=sys.stderr)
        return 1
    wallet = CustodialWallet(args.broker, args.queue)
    # the activator's own client: its batches never hold up a balance screen
    creator = CustodialWallet(args.broker, args.queue)
    meta = MetaClient(args.meta_url, token or None)
    activator = Activator(accounts, creator, meta, ChainSpec.parse(args.chain_spec))
    menus = Menus(accounts, wallet, pin_rounds=args.pin_rounds, on_registered=activator.wake)
    gateway = Gateway(menus, sessions, set(args.service_code))
    try:
        sock = _bind(args.port)
    except OSError as exc:
        print(f"error: cannot listen on {HOST}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    url = f"http://{HOST}:{sock.getsockname()[1]}"
    config = uvicorn.Config(create_app(gateway), log_level=args.log_level,
                            access_log=args.log_level == "debug", lifespan="off")
    server = uvicorn.Server(config)
    activator.start()
    print(json.dumps({"url": url, "pid": os.getpid()}), flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        activator.stop()
        creator.close()
        wallet.close()
        meta.close()
        sessions.close()
        accounts.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
