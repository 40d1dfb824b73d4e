"""The custodial engine: a Celery service that holds users' keys and signs for them.

Rooms: :mod:`.engine` (the operations, plain functions), :mod:`.tasks` (Celery adapters),
:mod:`.app` (the Celery app), :mod:`.storage` (PostgreSQL; :mod:`._sqlite` for SQLite),
:mod:`.keys` (AES-GCM at rest), :mod:`.txqueue` (nonces, dispatcher, tracker), :mod:`.process`
and :mod:`.devnet` (process control, ``cic-seed devnet up --custodial``), :mod:`.embedded`
(the engine inside one process). Clients know it only by its API, documented in
:mod:`cic_seeding.custodial`.

Running workers on several machines
-----------------------------------
Every worker of one engine needs the same four things: the Redis broker, the queue name, the
PostgreSQL database (and schema), the passphrase -- plus the chain and the engine's signing
key. Nonces are allocated in PostgreSQL under a row lock, and the dispatcher/tracker claim
transactions with ``SELECT ... FOR UPDATE SKIP LOCKED``, so any number of workers on any number
of machines may share one signer. On each machine::

    export CIC_CUSTODIAL_BROKER_URL=redis://broker-host:6379/0
    export CIC_CUSTODIAL_QUEUE=cic_custodial
    export CIC_CUSTODIAL_DB_URL=postgresql://engine:secret@db-host:5432/cic_custodial
    export CIC_CUSTODIAL_DB_SCHEMA=engine            # optional
    export CIC_CUSTODIAL_PASSPHRASE_FILE=/etc/cic/custodial.passphrase   # mode 0600
    export CIC_CUSTODIAL_KEYFILE=/etc/cic/custodial-signer.json
    export CIC_CUSTODIAL_KEYFILE_PASSWORD_FILE=/etc/cic/custodial-signer.pw
    export CIC_RPC_URL=http://node-host:8545 CIC_REGISTRY_ADDRESS=0x...
    python -m cic_devnet.custodial init       # once: schema, passphrase and chain check
    python -m cic_devnet.custodial worker --concurrency 8 --name worker-$(hostname)

(``celery -A cic_devnet.custodial.app worker -P threads`` works too.) Each worker also runs the
dispatcher/tracker loop; start workers with ``--no-queue-loop`` and run
``python -m cic_devnet.custodial queue`` where you want the loop instead. The signer's key must
be a writer of the AccountsIndex (and of the faucet, for faucet payouts); the devnet grants
that itself. Redis and PostgreSQL must be reachable from every machine; for a devnet the
values are in ``DEVNET_DIR/devnet.json`` under ``custodial``, and ``CIC_DEVNET_DIR=DEVNET_DIR``
gives them all as settings (its ``db_url`` has any password masked: give
``CIC_CUSTODIAL_DB_URL`` too then).

Without any configuration ``cic-seed devnet up --custodial`` uses PostgreSQL on
127.0.0.1:5432 (database ``cic_custodial``, created if missing, a fresh schema per devnet) and
Redis on 127.0.0.1:6379 (db 0, a fresh queue name per devnet).

Embedded
--------
Without PostgreSQL and Redis the engine can run inside one process (:mod:`.embedded`, used by
``cic-seed demo --custodial``): the same Celery app and tasks, a worker in a thread on kombu's
in-memory transport (broker ``memory://``), storage in one SQLite file (``DEVNET_DIR/
custodial.db``, :mod:`._sqlite`) whose writers are serialised by ``BEGIN IMMEDIATE`` instead of
row locks. Clients reach it only from that process (:mod:`cic_seeding.custodial.local`).
"""
