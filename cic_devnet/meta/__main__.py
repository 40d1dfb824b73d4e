"""``python -m cic_devnet.meta --port P --db URL_OR_PATH --token-file F``: serve on 127.0.0.1.

Once the socket is bound, one line ``{"url": "http://127.0.0.1:PORT", "pid": N}`` goes to stdout
(so ``--port 0`` is usable); logs go to stderr. The token is read from a file (``-`` = stdin)
and never logged.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys

HOST = "127.0.0.1"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cic_devnet.meta",
                                description="CIC metadata server (devnet service)")
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: a free one)")
    p.add_argument("--db", required=True,
                   help="postgresql://... URL, or a SQLite file path for the embedded store")
    p.add_argument("--schema", default=None,
                   help="PostgreSQL schema for the table (created if missing)")
    p.add_argument("--token-file", required=True,
                   help="file holding the bearer token writes need ('-': read from stdin)")
    p.add_argument("--log-level", default="warning",
                   choices=["critical", "error", "warning", "info", "debug"])
    return p.parse_args(argv)


def _read_token(path: str) -> str:
    if path == "-":
        return sys.stdin.readline().strip()
    with open(path, encoding="utf-8") as fh:
        return fh.read().strip()


def _bind(port: int) -> socket.socket:
    # proto must be IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only then,
    # and without it keep-alive requests stall ~40 ms on delayed ACKs.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("cic_devnet.meta")
    try:
        token = _read_token(args.token_file)
    except OSError as exc:
        print(f"error: cannot read the token file {args.token_file}: {exc.strerror}",
              file=sys.stderr)
        return 2
    if not token:
        print(f"error: the token file {args.token_file} is empty", file=sys.stderr)
        return 2

    import uvicorn

    from cic_devnet.meta.app import create_app
    from cic_devnet.meta.storage import open_storage

    try:
        storage = open_storage(args.db, schema=args.schema)
    except Exception as exc:  # any driver error: say which store, then exit
        print(f"error: cannot open the metadata store: {str(exc).strip()}", file=sys.stderr)
        return 1
    try:
        sock = _bind(args.port)
    except OSError as exc:
        print(f"error: cannot listen on {HOST}:{args.port}: {exc.strerror}", file=sys.stderr)
        storage.close()
        return 1
    url = f"http://{HOST}:{sock.getsockname()[1]}"
    log.info("serving %s on %s", storage.describe(), url)
    config = uvicorn.Config(create_app(storage, token), log_level=args.log_level,
                            access_log=args.log_level == "debug", lifespan="off")
    server = uvicorn.Server(config)
    print(json.dumps({"url": url, "pid": os.getpid()}), flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        storage.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
