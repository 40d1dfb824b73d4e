"""One worker process's share of generation: users of a range of indices, written to disk.

Everything about user ``i`` is a function of (seed, i, options) alone, so the output does not
depend on how indices are split between processes.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faker import Faker

from cic_seeding.datadir.store import BulkWriter
from cic_seeding.generate.keys import opening_balance, phone_key, user_address
from cic_seeding.generate.places import PLACES, PRODUCTS
from cic_seeding.records.chainspec import ChainSpec
from cic_seeding.records.person import build_person, dumps
from cic_seeding.records.phone import kenyan_mobile
from cic_seeding.records.pointers import phone_pointer
from cic_seeding.records.vcard import VCard

_YEAR = 365 * 86400
_EMAIL_DOMAINS = ("gmail.com", "yahoo.com", "example.co.ke", "mail.co.ke")


@dataclass(frozen=True)
class WorkerConfig:
    root: str
    seed: int
    locale: str
    chain_spec: str
    epoch: int
    max_balance: int  # smallest unit
    write: bool = True  # False: build records in memory only (the benchmark floor)


class UserFactory:
    """Builds the records of one user at a time; one per process (Faker is not cheap to make)."""

    def __init__(self, cfg: WorkerConfig) -> None:
        self.cfg = cfg
        self.fake = Faker(cfg.locale)
        self.chain = ChainSpec.parse(cfg.chain_spec)
        self.phone_key = phone_key(cfg.seed)
        self.src = BulkWriter(Path(cfg.root) / "src")
        self.phones = BulkWriter(Path(cfg.root) / "phone")
        self.epoch_year = 1970 + cfg.epoch // 31_556_952

    def user_seed(self, index: int) -> int:
        digest = hashlib.sha256(b"cic-seeding/user/v1" + str(self.cfg.seed).encode() + b":"
                                + str(index).encode()).digest()
        return int.from_bytes(digest[:8], "big")

    def person(self, index: int, address: str, phone: str) -> dict[str, Any]:
        """The person document of user ``index``."""
        fake = self.fake
        fake.seed_instance(self.user_seed(index))
        r = fake.random
        roll = r.random()
        if roll < 0.49:
            gender, given = "female", fake.first_name_female()
        elif roll < 0.98:
            gender, given = "male", fake.first_name_male()
        else:
            gender, given = "other", fake.first_name()
        family = fake.last_name()
        email = None
        if r.random() < 0.25:
            local = _ascii(f"{given}.{family}").lower().replace(" ", "")
            email = f"{local}{r.randint(1, 99)}@{r.choice(_EMAIL_DOMAINS)}"
        year = r.randint(self.epoch_year - 80, self.epoch_year - 16)
        dob_roll = r.random()
        if dob_roll < 0.85:
            dob = {"year": year, "month": r.randint(1, 12), "day": r.randint(1, 28)}
        elif dob_roll < 0.95:
            dob = {"year": year}
        else:
            dob = {}
        area, lat, lon = r.choice(PLACES)
        location = {"area_name": area, "latitude": round(lat + r.uniform(-0.02, 0.02), 6),
                    "longitude": round(lon + r.uniform(-0.02, 0.02), 6)}
        products = sorted(r.sample(PRODUCTS, r.randint(0, 3)))
        return build_person(
            address=address, chain=self.chain,
            card=VCard(given=given, family=family, phone=phone, email=email),
            gender=gender, date_registered=self.cfg.epoch - r.randrange(0, 3 * _YEAR),
            date_of_birth=dob, location=location, products=products)

    def make(self, index: int) -> tuple[int, str, str, int]:
        address = user_address(self.cfg.seed, index)
        phone = kenyan_mobile(self.phone_key, index)
        doc = self.person(index, address, phone)
        balance = opening_balance(self.cfg.seed, index, self.cfg.max_balance)
        if self.cfg.write:
            self.src.put(address, dumps(doc))
            self.phones.put(phone_pointer(phone), address.encode())
        return index, address, phone, balance


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


_FACTORY: UserFactory | None = None


def init_worker(cfg: WorkerConfig) -> None:
    global _FACTORY  # process-local: one factory per worker process
    _FACTORY = UserFactory(cfg)


def make_range(bounds: tuple[int, int]) -> list[tuple[int, str, str, int]]:
    """Build (and write) users bounds[0]..bounds[1]-1; returns their csv facts."""
    assert _FACTORY is not None, "init_worker was not called"
    return [_FACTORY.make(i) for i in range(*bounds)]
