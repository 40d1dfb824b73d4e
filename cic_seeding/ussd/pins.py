"""Seeded PINs: every generated user has a 4-digit PIN derived from the dataset's seed.

The derivation is deterministic (``sha256(b"cic-ussd-pin:" seed ":" index)``), so the
importer, ``create_import_pins.py`` and the ``ussd_pins`` check agree without storing PINs in
clear anywhere. PINs are stored only as bcrypt hashes.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from cic_seeding.datadir import DataDir
from cic_seeding.errors import DataDirError

PIN_RE = re.compile(r"[0-9]{4}")
#: bcrypt cost used when none is given (2**10 rounds: slow enough, quick enough for a devnet).
DEFAULT_ROUNDS = 10
PINS_CSV = "pins.csv"


def _digest(seed: int, index: int, purpose: str) -> bytes:
    return hashlib.sha256(f"cic-ussd-{purpose}:{seed}:{index}".encode()).digest()


def seeded_pin(seed: int, index: int) -> str:
    """The 4-digit PIN of user ``index`` of a dataset generated with ``seed``."""
    return f"{int.from_bytes(_digest(seed, index, 'pin')[:8], 'big') % 10_000:04d}"


def hash_pin(pin: str, rounds: int = DEFAULT_ROUNDS) -> str:
    """A bcrypt hash of a 4-digit PIN; ValueError for anything else."""
    if not PIN_RE.fullmatch(pin):
        raise ValueError("a PIN is exactly 4 digits")
    import bcrypt  # the ussd extra; deferred so the PIN derivation needs only the core

    return bcrypt.hashpw(pin.encode(), bcrypt.gensalt(rounds)).decode()


def check_pin(pin: str, hashed: str | None) -> bool:
    """Whether ``pin`` matches the bcrypt ``hashed`` (False for no hash or a bad one)."""
    if not hashed or not PIN_RE.fullmatch(pin):
        return False
    import bcrypt

    try:
        return bcrypt.checkpw(pin.encode(), hashed.encode())
    except ValueError:
        return False


@dataclass(frozen=True)
class PinRow:
    phone: str
    pin: str
    pin_hash: str


def write_pins(directory: str | Path, *, rounds: int = DEFAULT_ROUNDS) -> Path:
    """Write ``pins.csv`` (``phone,pin,hash``) for every user of the data directory.

    The PIN is the seeded one (:func:`seeded_pin`), so a rerun writes the same PINs (with new
    salts). Returns the file's path.
    """
    data = DataDir(directory)
    try:
        seed = data.manifest().seed
        users = list(data.users())
    except FileNotFoundError as exc:
        raise DataDirError(f"{directory} is not a data directory: {exc.filename} is missing",
                           hint="generate one with `cic-seed generate --dir DIR COUNT`") from None
    path = data.root / PINS_CSV
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        for u in users:
            pin = seeded_pin(seed, u.index)
            out.writerow([u.phone, pin, hash_pin(pin, rounds)])
    tmp.chmod(0o600)
    tmp.replace(path)
    return path


def read_pins(directory: str | Path) -> list[PinRow]:
    """The rows of ``DIR/pins.csv``; DataDirError when it is missing or malformed."""
    path = Path(directory) / PINS_CSV
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except FileNotFoundError:
        raise DataDirError(f"{path} does not exist",
                           hint=f"write it with `python create_import_pins.py {directory}`"
                           ) from None
    out = []
    for lineno, row in enumerate(rows, 1):
        if len(row) != 3 or not PIN_RE.fullmatch(row[1]) or not row[2].startswith("$2"):
            raise DataDirError(f"{path}:{lineno}: expected phone,pin,bcrypt hash")
        out.append(PinRow(*row))
    return out
