"""Generate N users into a data directory: reproducibly, on every core, in constant memory."""

from __future__ import annotations

import difflib
import multiprocessing
import os
import secrets
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Literal

from faker.config import AVAILABLE_LOCALES

from cic_seeding import __version__
from cic_seeding.datadir import DataDir, Manifest
from cic_seeding.datadir.manifest import MANIFEST_NAME
from cic_seeding.datadir.store import atomic_write
from cic_seeding.datadir.timeline import TIMELINE_NAME
from cic_seeding.errors import DataDirError, DataDirExistsError, UsageError
from cic_seeding.generate._transactions import any_funded, transfers
from cic_seeding.generate._worker import UserFactory, WorkerConfig, init_worker, make_range
from cic_seeding.generate.keys import SEED_BITS, check_seed
from cic_seeding.records.chainspec import ChainSpec
from cic_seeding.records.phone import MAX_USERS

DEFAULT_EPOCH = 1_700_000_000  # 2023-11-14: reference time when --epoch is not given
DEFAULT_TAGS = ("individual",)
DEFAULT_GIFT_THRESHOLD = 100
DEFAULT_DECIMALS = 6
DEFAULT_CHAIN_SPEC = "evm:byzantium:8996:bloxberg"
DEFAULT_LOCALE = "en_KE"
EPOCH_RANGE = (10 * 31_556_952, 4_102_444_800)  # 1980 .. 2100: birth years stay in the schema
CHUNK = 250  # users per task sent to a worker process
IN_FLIGHT = 4  # tasks queued per worker: bounds memory when the writer falls behind
Mode = Literal["new", "append", "reset"]
# What a generator run (and the runs after it) may leave in a directory; --reset wipes only
# directories made of these.
GENERATED_NAMES = frozenset({"src", "new", "phone", "keystore", "tx", MANIFEST_NAME, "users.csv",
                             "tags.csv", "balances.csv", "transactions.csv", TIMELINE_NAME})


@dataclass(frozen=True)
class GenerateOptions:
    """What to generate.

    A dataset property left at None (seed, tags, gift_threshold, decimals, chain_spec, locale,
    epoch) takes its default in a new directory and the manifest's value when appending; giving
    a value other than the manifest's when appending is an error, so one directory never mixes
    seeds, units or chains.
    """

    directory: Path
    count: int
    seed: int | None = None
    tags: tuple[str, ...] | None = None
    gift_threshold: int | None = None
    decimals: int | None = None
    chain_spec: str | None = None
    locale: str | None = None
    transactions: int = 0
    epoch: int | None = None
    mode: Mode = "new"
    workers: int = 0  # 0: one per core


@dataclass(frozen=True)
class GenerateResult:
    directory: Path
    first_index: int
    generated: int
    manifest: Manifest
    seconds: float


def generate(opts: GenerateOptions,
             progress: Callable[[int], None] | None = None) -> GenerateResult:
    """Write ``opts.count`` users into ``opts.directory``; returns what was written.

    Every input is checked before anything on disk changes. ``manifest.json`` is written last.
    """
    _check(opts)
    started = time.perf_counter()
    existing = _existing_manifest(opts.directory) if opts.mode == "append" else None
    manifest = _resolve(opts, existing)
    first = existing.count if existing else 0
    _check_run(manifest, first, opts)
    data, tx_offset = _prepare(opts, existing)
    cfg = WorkerConfig(root=str(data.root), seed=manifest.seed, locale=manifest.locale,
                       chain_spec=manifest.chain_spec, epoch=manifest.epoch,
                       max_balance=_max_balance(manifest))
    try:
        _write_users(data, cfg, manifest.tags, first, opts, progress)
        if opts.transactions:
            with data.transactions_csv.open("a", encoding="utf-8", newline="") as fh:
                for sender, recipient, amount, offset in transfers(
                        manifest.seed, first, opts.count, cfg.max_balance, opts.transactions,
                        tx_offset):
                    fh.write(f"{sender},{recipient},{amount},{offset}\n")
            manifest.transactions += opts.transactions
        manifest.count = first + opts.count
        atomic_write(data.manifest_path, manifest.dumps(), 0o644)
    except OSError as exc:
        raise DataDirError(f"writing {data.root} failed: {exc}",
                           hint="free space or fix permissions, then rerun with --reset") from None
    return GenerateResult(data.root, first, opts.count, manifest, time.perf_counter() - started)


def _check(opts: GenerateOptions) -> None:
    """Reject every bad option on its own, before anything is read or written."""
    if opts.count <= 0:
        raise UsageError(f"COUNT must be a positive number of users, got {opts.count}")
    if opts.count > MAX_USERS:
        raise UsageError(f"COUNT must be at most {MAX_USERS:,} (the phone number space), "
                         f"got {opts.count:,}")
    if opts.locale is not None and opts.locale not in AVAILABLE_LOCALES:
        near = difflib.get_close_matches(opts.locale, AVAILABLE_LOCALES, n=4)
        raise UsageError(f"unknown locale {opts.locale!r}"
                         + (f"; did you mean {', '.join(near)}?" if near
                            else "; e.g. en_KE, sw, en_US (any Faker locale)"))
    if opts.chain_spec is not None:
        ChainSpec.parse(opts.chain_spec)
    if opts.decimals is not None and not 0 <= opts.decimals <= 36:
        raise UsageError(f"--decimals must be between 0 and 36, got {opts.decimals}")
    if opts.gift_threshold is not None and opts.gift_threshold < 0:
        raise UsageError(f"--gift-threshold must be >= 0, got {opts.gift_threshold}")
    if opts.transactions < 0:
        raise UsageError(f"--transactions must be >= 0, got {opts.transactions}")
    if opts.workers < 0:
        raise UsageError(f"--workers must be >= 0 (0: one per core), got {opts.workers}")
    if opts.seed is not None and not check_seed(opts.seed):
        raise UsageError(f"--seed must be between -2**{SEED_BITS} and 2**{SEED_BITS}-1, "
                         f"got {opts.seed}")
    if opts.epoch is not None and not EPOCH_RANGE[0] <= opts.epoch <= EPOCH_RANGE[1]:
        raise UsageError(f"--epoch must be a unix time between {EPOCH_RANGE[0]} (1980) and "
                         f"{EPOCH_RANGE[1]} (2100), got {opts.epoch}")
    for tag in opts.tags or ():
        if not tag or "," in tag or tag != tag.strip():
            raise UsageError(f"tag {tag!r} must be non-empty, without commas or outer spaces")


def _existing_manifest(root: Path) -> Manifest:
    if not root.exists():
        raise DataDirError(f"cannot append to {root}: it does not exist",
                           hint="drop -f to create it")
    if not root.is_dir():
        raise DataDirError(f"cannot append to {root}: it is not a directory",
                           hint="choose another --dir")
    return DataDir(root).manifest()


def _resolve(opts: GenerateOptions, existing: Manifest | None) -> Manifest:
    """The manifest this run writes: the options over the defaults, or the existing one."""
    if existing is None:
        return Manifest(
            tool_version=__version__,
            seed=opts.seed if opts.seed is not None else secrets.randbits(63),
            count=0,
            decimals=_given(opts.decimals, DEFAULT_DECIMALS),
            chain_spec=str(ChainSpec.parse(_given(opts.chain_spec, DEFAULT_CHAIN_SPEC))),
            tags=list(_given(opts.tags, DEFAULT_TAGS)),
            gift_threshold=_given(opts.gift_threshold, DEFAULT_GIFT_THRESHOLD),
            locale=_given(opts.locale, DEFAULT_LOCALE),
            epoch=_given(opts.epoch, DEFAULT_EPOCH))
    chain = str(ChainSpec.parse(opts.chain_spec)) if opts.chain_spec is not None else None
    for flag, given, kept in (
            ("--seed", opts.seed, existing.seed),
            ("--decimals", opts.decimals, existing.decimals),
            ("--gift-threshold", opts.gift_threshold, existing.gift_threshold),
            ("--chain-spec", chain, existing.chain_spec),
            ("--locale", opts.locale, existing.locale),
            ("--epoch", opts.epoch, existing.epoch),
            ("--tag", list(opts.tags) if opts.tags is not None else None, existing.tags)):
        if given is not None and given != kept:
            raise UsageError(
                f"{opts.directory} was generated with {flag} {_show(kept)}; appending with "
                f"{flag} {_show(given)} would mix two datasets",
                hint=f"drop {flag} to keep the directory's value, or pass --reset to start over")
    return existing


def _given(value: Any, default: Any) -> Any:
    return default if value is None else value


def _show(value: Any) -> str:
    return ",".join(value) if isinstance(value, list) else str(value)


def _max_balance(manifest: Manifest) -> int:
    return manifest.gift_threshold * int(10**manifest.decimals)


def _check_run(manifest: Manifest, first: int, opts: GenerateOptions) -> None:
    """Checks that need the dataset's properties (and, when appending, its size)."""
    if first + opts.count > MAX_USERS:
        raise UsageError(f"a data directory holds at most {MAX_USERS:,} users (the phone number "
                         f"space); {opts.directory} has {first:,}, asked for {opts.count:,} more")
    if _max_balance(manifest) >= 2**256:
        raise UsageError("--gift-threshold times 10**decimals must fit a uint256 token balance")
    if opts.transactions and (opts.count < 2 or not any_funded(
            manifest.seed, first, opts.count, _max_balance(manifest))):
        raise UsageError(
            "--transactions needs at least two users and a positive gift threshold "
            f"(got COUNT {opts.count}, --gift-threshold {manifest.gift_threshold})")


def _prepare(opts: GenerateOptions, existing: Manifest | None) -> tuple[DataDir, int]:
    """Create, wipe or reopen the directory; returns it and the last transfer offset."""
    root = opts.directory
    try:
        if opts.mode == "reset" and root.exists():
            _check_wipeable(root)
            shutil.rmtree(root)
        if root.exists() and not root.is_dir():
            raise DataDirError(f"cannot use {root} as the data directory: it is a file",
                               hint="choose another --dir")
        if opts.mode != "append" and root.exists() and any(root.iterdir()):
            raise DataDirExistsError(
                f"data directory {root} already exists",
                hint="pass -f to append users to it or --reset to wipe it first")
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
        data = DataDir(root)
        offset = 0
        if existing is not None:
            for path in (data.users_csv, data.tags_csv, data.balances_csv):
                _keep_lines(path, existing.count)
            last = _keep_lines(data.transactions_csv, existing.transactions)
            offset = int(last.split(b",")[3]) if last else 0
    except DataDirError:
        raise
    except (OSError, IndexError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise DataDirError(f"cannot write the data directory {root}: {reason}",
                           hint="choose a writable --dir") from None
    return data, offset


def _check_wipeable(root: Path) -> None:
    if not root.is_dir():
        raise UsageError(f"--reset refuses to remove {root}: it is a file, not a data directory",
                         hint="choose another --dir")
    if (root / MANIFEST_NAME).exists():
        return
    foreign = sorted(p.name for p in root.iterdir()
                     if p.name not in GENERATED_NAMES and not p.name.startswith("."))
    if foreign:
        raise UsageError(
            f"--reset refuses to wipe {root}: it has no {MANIFEST_NAME} and holds "
            f"{', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}, so it is not a data "
            "directory", hint="remove it yourself or choose another --dir")


def _keep_lines(path: Path, keep: int) -> bytes:
    """Cut ``path`` after its first ``keep`` lines (rows an interrupted run left behind).

    Returns the last kept line. Fewer lines than ``keep`` means the directory is damaged.
    """
    if not path.exists():
        if keep == 0:
            return b""
        raise DataDirError(f"{path} is missing but {MANIFEST_NAME} counts {keep} rows",
                           hint="the directory is damaged; regenerate it with --reset")
    last = b""
    with path.open("r+b") as fh:
        for _ in range(keep):
            line = fh.readline()
            if not line.endswith(b"\n"):
                raise DataDirError(
                    f"{path} has fewer rows than {MANIFEST_NAME} counts ({keep})",
                    hint="the directory is damaged; regenerate it with --reset")
            last = line
        if fh.tell() < os.fstat(fh.fileno()).st_size:
            fh.truncate(fh.tell())
    return last


def _write_users(data: DataDir, cfg: WorkerConfig, tags: list[str], first: int,
                 opts: GenerateOptions, progress: Callable[[int], None] | None) -> None:
    tag_suffix = ",".join(tags)
    with (data.users_csv.open("a", encoding="utf-8", newline="") as users_fh,
          data.tags_csv.open("a", encoding="utf-8", newline="") as tags_fh,
          data.balances_csv.open("a", encoding="utf-8", newline="") as bal_fh):
        for index, address, phone, balance in _users(cfg, first, opts.count, opts.workers):
            key = address[2:].lower()
            users_fh.write(f"{index},{address},{phone}\n")
            tags_fh.write(f"{key},{tag_suffix}\n")
            bal_fh.write(f"{key},{balance}\n")
            if progress:
                progress(1)


def _users(cfg: WorkerConfig, first: int, count: int,
           workers: int) -> Iterator[tuple[int, str, str, int]]:
    """Users first..first+count in index order, built by ``workers`` processes.

    At most ``IN_FLIGHT`` chunks per worker are queued or waiting to be consumed, so memory does
    not grow with ``count`` even when the consumer is slower than the workers.
    """
    ranges = ((s, min(s + CHUNK, first + count)) for s in range(first, first + count, CHUNK))
    workers = workers or os.cpu_count() or 1
    if workers == 1 or count <= CHUNK:
        factory = UserFactory(cfg)
        for i in range(first, first + count):
            yield factory.make(i)
        return
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, initializer=init_worker, initargs=(cfg,)) as pool:
        pending = deque(pool.apply_async(make_range, (r,))
                        for r in islice(ranges, workers * IN_FLIGHT))
        while pending:
            chunk = pending.popleft().get()
            for bounds in islice(ranges, 1):
                pending.append(pool.apply_async(make_range, (bounds,)))
            yield from chunk
