"""Generate N users into a data directory, reproducibly and in parallel."""

from __future__ import annotations

import difflib
import hashlib
import multiprocessing
import os
import random
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from faker.config import AVAILABLE_LOCALES

from cic_seeding import __version__
from cic_seeding.datadir import DataDir, Manifest
from cic_seeding.datadir.store import atomic_write
from cic_seeding.errors import DataDirError, DataDirExistsError, UsageError
from cic_seeding.generate._worker import UserFactory, WorkerConfig, init_worker, make_range
from cic_seeding.records.chainspec import ChainSpec

DEFAULT_EPOCH = 1_700_000_000  # 2023-11-14: reference time when --epoch is not given
CHUNK = 250
Mode = Literal["new", "append", "reset"]


@dataclass(frozen=True)
class GenerateOptions:
    directory: Path
    count: int
    seed: int | None = None
    tags: tuple[str, ...] = ("individual",)
    gift_threshold: int = 100
    decimals: int = 6
    chain_spec: str = "evm:byzantium:8996:bloxberg"
    locale: str = "en_KE"
    transactions: int = 0
    epoch: int | None = None
    mode: Mode = "new"
    workers: int = 0


@dataclass(frozen=True)
class GenerateResult:
    directory: Path
    first_index: int
    generated: int
    manifest: Manifest
    seconds: float


def _check(opts: GenerateOptions) -> None:
    if opts.count <= 0:
        raise UsageError(f"COUNT must be a positive number of users, got {opts.count}")
    if opts.locale not in AVAILABLE_LOCALES:
        near = difflib.get_close_matches(opts.locale, AVAILABLE_LOCALES, n=4)
        raise UsageError(f"unknown locale {opts.locale!r}"
                         + (f"; did you mean {', '.join(near)}?" if near else ""))
    ChainSpec.parse(opts.chain_spec)
    if not 0 <= opts.decimals <= 36:
        raise UsageError(f"--decimals must be between 0 and 36, got {opts.decimals}")
    if opts.gift_threshold < 0:
        raise UsageError(f"--gift-threshold must be >= 0, got {opts.gift_threshold}")
    if opts.transactions < 0:
        raise UsageError(f"--transactions must be >= 0, got {opts.transactions}")
    for tag in opts.tags:
        if not tag or "," in tag or tag != tag.strip():
            raise UsageError(f"tag {tag!r} must be non-empty, without commas or outer spaces")


def _prepare(opts: GenerateOptions) -> tuple[DataDir, Manifest | None]:
    root = opts.directory
    try:
        if opts.mode == "reset" and root.exists():
            shutil.rmtree(root)
        if opts.mode == "append":
            if not root.is_dir():
                raise DataDirError(f"cannot append to {root}: it does not exist",
                                   hint="drop -f to create it")
            return DataDir(root), DataDir(root).manifest()
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise DataDirExistsError(
                f"data directory {root} already exists",
                hint="pass -f to append users to it or --reset to wipe it first")
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except (PermissionError, NotADirectoryError, FileExistsError, OSError) as exc:
        if isinstance(exc, DataDirError):
            raise
        raise DataDirError(f"cannot write the data directory {root}: {exc.strerror or exc}",
                           hint="choose a writable --dir") from None
    return DataDir(root), None


def generate(opts: GenerateOptions,
             progress: Callable[[int], None] | None = None) -> GenerateResult:
    """Write ``opts.count`` users into ``opts.directory``; returns what was written."""
    _check(opts)
    started = time.perf_counter()
    data, existing = _prepare(opts)
    if existing is not None:
        if opts.seed is not None and opts.seed != existing.seed:
            raise UsageError(f"{data.root} was generated with seed {existing.seed}; "
                             "appending with another seed would break reproducibility")
        manifest = existing
        first = existing.count
    else:
        manifest = Manifest(
            tool_version=__version__,
            seed=opts.seed if opts.seed is not None else secrets.randbits(63),
            count=0, decimals=opts.decimals, chain_spec=opts.chain_spec, tags=list(opts.tags),
            gift_threshold=opts.gift_threshold, locale=opts.locale,
            epoch=opts.epoch if opts.epoch is not None else DEFAULT_EPOCH)
        first = 0
    cfg = WorkerConfig(root=str(data.root), seed=manifest.seed, locale=manifest.locale,
                       chain_spec=manifest.chain_spec, epoch=manifest.epoch,
                       max_balance=manifest.gift_threshold * 10 ** manifest.decimals)
    balances: list[tuple[str, int]] = []
    try:
        with (data.users_csv.open("a", encoding="utf-8", newline="") as users_fh,
              data.tags_csv.open("a", encoding="utf-8", newline="") as tags_fh,
              data.balances_csv.open("a", encoding="utf-8", newline="") as bal_fh):
            tag_suffix = ",".join(manifest.tags)
            for index, address, phone, balance in _users(cfg, first, opts.count, opts.workers):
                key = address[2:].lower()
                users_fh.write(f"{index},{address},{phone}\n")
                tags_fh.write(f"{key},{tag_suffix}\n")
                bal_fh.write(f"{key},{balance}\n")
                if opts.transactions:
                    balances.append((address, balance))
                if progress:
                    progress(1)
        if opts.transactions:
            _write_transactions(data, manifest.seed, first, balances, opts.transactions)
            manifest.transactions += opts.transactions
    except OSError as exc:
        raise DataDirError(f"writing {data.root} failed: {exc}",
                           hint="free space or fix permissions, then rerun with --reset") from None
    manifest.count = first + opts.count
    atomic_write(data.manifest_path, manifest.dumps(), 0o644)
    return GenerateResult(data.root, first, opts.count, manifest, time.perf_counter() - started)


def _users(cfg: WorkerConfig, first: int, count: int,
           workers: int) -> Iterator[tuple[int, str, str, int]]:
    """Users first..first+count in index order, built by ``workers`` processes."""
    ranges = [(s, min(s + CHUNK, first + count)) for s in range(first, first + count, CHUNK)]
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(ranges) == 1:
        factory = UserFactory(cfg)
        for lo, hi in ranges:
            for i in range(lo, hi):
                yield factory.make(i)
        return
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, initializer=init_worker, initargs=(cfg,)) as pool:
        for chunk in pool.imap(make_range, ranges):
            yield from chunk


def _write_transactions(data: DataDir, seed: int, first: int, balances: list[tuple[str, int]],
                        count: int) -> None:
    """Transfer fixtures between this run's users that never overdraw a sender."""
    funded = [i for i, (_, bal) in enumerate(balances) if bal > 0]
    if len(balances) < 2 or not funded:
        raise UsageError("--transactions needs at least two users and a positive gift threshold")
    rng = random.Random(hashlib.sha256(f"cic-seeding/tx/v1:{seed}:{first}".encode()).digest())
    current = [bal for _, bal in balances]
    offset = 0
    lines = []
    for _ in range(count):
        if not funded:
            break
        pos = rng.randrange(len(funded))
        sender = funded[pos]
        recipient = rng.randrange(len(balances) - 1)
        recipient += recipient >= sender
        amount = rng.randint(1, max(1, current[sender] // 4))
        current[sender] -= amount
        current[recipient] += amount
        if current[sender] == 0:
            funded[pos] = funded[-1]
            funded.pop()
        if current[recipient] == amount:
            funded.append(recipient)
        offset += rng.randint(1, 600)
        lines.append(f"{balances[sender][0]},{balances[recipient][0]},{amount},{offset}\n")
    with data.transactions_csv.open("a", encoding="utf-8", newline="") as fh:
        fh.writelines(lines)
