"""``python -m cic_devnet.custodial worker|queue|init``: run the engine's processes.

* ``worker``: a Celery worker (thread pool) consuming the engine's queue, with the queue loop
  (dispatcher and tracker) in a thread unless ``--no-queue-loop``;
* ``queue``: only the queue loop (a dispatcher/tracker process of its own);
* ``init``: create the database schema, check the passphrase and the chain, print the status.

Configuration comes from the environment (``CIC_CUSTODIAL_*``, ``CIC_DEVNET_DIR`` or
``CIC_RPC_URL``/``CIC_REGISTRY_ADDRESS``) and the config file, like every cic-seed setting.
The engine is opened before anything else, so a bad configuration ends the process at once
with one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import sys
import threading

from cic_seeding.config import load_settings
from cic_seeding.errors import CicSeedError

#: Seconds a thread of a worker process runs before another may take the interpreter (Python's
#: default is 0.005): the dispatcher and tracker wait on the node and the database between
#: short bursts of work, and each time they come back they wait for a task thread that is
#: signing to let go; a shorter slice makes the queue ~10 % quicker under a batch of creates.
SWITCH_INTERVAL = 0.0005


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cic_devnet.custodial",
                                description="CIC custodial engine (devnet service)")
    sub = p.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("worker", help="run a Celery worker of the engine")
    worker.add_argument("--concurrency", type=int, default=4, help="task threads")
    worker.add_argument("--name", default=None, help="worker node name (default: from host)")
    worker.add_argument("--no-queue-loop", action="store_true",
                        help="do not run the dispatcher/tracker in this process")
    sub.add_parser("queue", help="run only the dispatcher and tracker")
    sub.add_parser("init", help="create the schema, check passphrase and chain, print status")
    for cmd in sub.choices.values():
        cmd.add_argument("--log-level", default="INFO",
                         choices=["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"])
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.command in ("worker", "queue"):
        sys.setswitchinterval(SWITCH_INTERVAL)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from cic_devnet.custodial.app import create_app

    settings = load_settings()
    app = create_app(settings, queue_loop=not getattr(args, "no_queue_loop", False))
    try:
        engine = app.cic_engine.get()
    except CicSeedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.command == "init":
        print(json.dumps(engine.status(), sort_keys=True))
        app.cic_engine.close()
        return 0
    if args.command == "queue":
        return _queue_only(app)
    name = args.name or f"custodial-{socket.gethostname()}"
    app.worker_main(["worker", "--pool", "threads", "--concurrency", str(args.concurrency),
                     "--queues", app.conf.task_default_queue, "--hostname", f"{name}@%h",
                     "--without-mingle", "--without-gossip", "--without-heartbeat",
                     "--loglevel", args.log_level])
    return 0


def _queue_only(app: object) -> int:
    stop = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: stop.set())
    ref = app.cic_engine  # type: ignore[attr-defined]
    ref.start_loop()
    stop.wait()
    ref.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
