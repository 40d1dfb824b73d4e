"""The USSD gateway in tests: a devnet, a custodial engine, a metadata server and the gateway,
each a real process with its own PostgreSQL schema, queue and files; stopped by pid after."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cic_devnet.devnet import Devnet
from cic_devnet.meta.process import MetaServerProcess, start_meta_server
from cic_devnet.ussd.process import GatewayOptions, GatewayProcess, start_gateway
from cic_seeding.config import Settings
from cic_seeding.meta.client import MetaClient
from cic_seeding.records.pointers import phone_pointer
from cic_seeding.ussd.client import Screen, UssdClient
from tests.conftest import devnet_settings
from tests.custodial.world import REDIS_URL, Harness
from tests.pg import PG_URL, fresh_schema, sql_in

PIN_ROUNDS = 4  # the bcrypt minimum: tests hash many PINs


@dataclass
class Stack:
    """Every service the gateway needs, started for one test module."""

    devnet: Devnet
    harness: Harness
    meta: MetaServerProcess
    gateway: GatewayProcess
    schema: str
    _phones: Iterator[int] = field(default_factory=lambda: iter(range(10**6)))

    @classmethod
    @contextmanager
    def running(cls, devnet: Devnet, root: Path) -> Iterator[Stack]:
        with fresh_schema("cust") as cust_schema, fresh_schema("ussd") as schema:
            harness = Harness.prepare(devnet, root, cust_schema)
            meta: MetaServerProcess | None = None
            gateway: GatewayProcess | None = None
            stack: Stack | None = None
            try:
                harness.start(1, concurrency=8)
                meta = start_meta_server(db=str(root / "meta.db"))
                gateway = start_gateway(GatewayOptions(
                    db=PG_URL, schema=schema, redis=REDIS_URL, broker=harness.broker_url,
                    queue=harness.setup.queue, meta_url=meta.url, meta_token=meta.token,
                    chain_spec=devnet.info["chain_spec"], pin_rounds=PIN_ROUNDS),
                    log_file=str(root / "gateway.log"), log_level="info")
                stack = cls(devnet, harness, meta, gateway, schema)
                yield stack
            finally:
                if stack is not None and stack.gateway is not gateway:
                    stack.gateway.stop()  # a test restarted it
                if gateway is not None:
                    gateway.stop()
                if meta is not None:
                    meta.stop()
                harness.stop()

    def restart_gateway(self) -> None:
        self.gateway = self.gateway.restart()

    def client(self) -> UssdClient:
        return UssdClient(self.gateway.url, self.gateway.service_code, timeout=30)

    def new_phone(self) -> str:
        """A phone number no test of this module used (random prefix per module)."""
        return f"+2547{self.schema[-4:].translate(str.maketrans('abcdef', '123456'))}" \
               f"{next(self._phones):04d}"

    def settings(self, data_dir: Path, **flags: object) -> Settings:
        return devnet_settings(self.devnet, data_dir, **{
            "custodial_broker_url": self.harness.broker_url,
            "custodial_queue": self.harness.setup.queue, "meta_url": self.meta.url,
            "meta_token": self.meta.token, "ussd_url": self.gateway.url,
            "ussd_service_code": self.gateway.service_code, "ussd_db_url": PG_URL,
            "ussd_db_schema": self.schema, **flags})

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return sql_in(self.schema, query, params)

    def address_of(self, phone: str, timeout: float = 60) -> str:
        """Wait until the metadata server has the phone pointer; the address it names."""
        with MetaClient(self.meta.url) as meta:
            doc = wait_for(lambda: meta.get(phone_pointer(phone)), timeout=timeout,
                           what=f"phone pointer of {phone}")
        return str(doc)


def register(client: UssdClient, phone: str, *, language: str = "1", given: str = "Amina",
             family: str = "Otieno", gender: str = "2", location: str = "Kibera",
             pin: str = "1234") -> list[Screen]:
    return client.session(phone, [language, given, family, gender, location, pin, pin])


def wait_for(condition: Callable[[], Any], *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f}s")
        time.sleep(delay)  # bounded by the deadline
        delay = min(delay * 2, 0.5)
