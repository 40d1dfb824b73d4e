"""Seeded PINs: every generated user has a 4-digit PIN derived from the dataset's seed.

The derivation is deterministic (``sha256(b"cic-ussd-pin:" seed ":" index)``), so the
importer, ``create_import_pins.py`` and the ``ussd_pins`` check agree without storing PINs in
clear anywhere. PINs are stored only as bcrypt hashes.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from cic_seeding.datadir import DataDir
from cic_seeding.errors import DataDirError

PIN_RE = re.compile(r"[0-9]{4}")
#: bcrypt cost used when none is given (2**10 rounds: slow enough, quick enough for a devnet).
DEFAULT_ROUNDS = 10
PINS_CSV = "pins.csv"
#: Written beside pins.csv when it is not in the data directory: the data directory it is of.
PINS_SOURCE = "pins.json"


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


def write_pins(directory: str | Path, *, rounds: int = DEFAULT_ROUNDS,
               into: str | Path | None = None) -> Path:
    """Write ``pins.csv`` (``phone,pin,hash``) for every user of the data directory, into
    ``into`` (default: the data directory itself).

    The PIN is the seeded one (:func:`seeded_pin`), so a rerun writes the same PINs (with new
    salts). A pins directory of its own (the older scripts' ``pinsdir``) also gets
    ``pins.json``, naming the data directory, so that ``ussd-pins`` given only the pins
    directory finds its users. Returns the path of pins.csv.
    """
    data = DataDir(directory)
    try:
        seed = data.manifest().seed
        users = list(data.users())
    except FileNotFoundError as exc:
        raise DataDirError(f"{directory} is not a data directory: {exc.filename} is missing",
                           hint="generate one with `cic-seed generate --dir DIR COUNT`") from None
    target = Path(into) if into is not None else data.root
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataDirError(f"cannot make the pins directory {target}: {exc.strerror}") from None
    path = target / PINS_CSV
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        for u in users:
            pin = seeded_pin(seed, u.index)
            out.writerow([u.phone, pin, hash_pin(pin, rounds)])
    tmp.chmod(0o600)
    tmp.replace(path)
    source = target / PINS_SOURCE
    if target.resolve() != data.root.resolve():
        source.write_text(json.dumps({"data_dir": str(data.root.resolve()),
                                      "users": len(users)}) + "\n", encoding="utf-8")
    elif source.exists():
        source.unlink()
    return path


def pins_source(directory: str | Path) -> str | None:
    """The data directory a pins directory of its own was written for (its ``pins.json``);
    None for a directory without one (a data directory holds its own pins.csv)."""
    try:
        doc = json.loads((Path(directory) / PINS_SOURCE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise DataDirError(f"cannot read {Path(directory) / PINS_SOURCE}: {exc}",
                           hint="write the pins again with `python create_import_pins.py`"
                           ) from None
    found = doc.get("data_dir") if isinstance(doc, dict) else None
    if not isinstance(found, str):
        raise DataDirError(f"{Path(directory) / PINS_SOURCE} names no data_dir",
                           hint="write the pins again with `python create_import_pins.py`")
    return found


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
