"""Run the selected checks over every user, in batches, and return a :class:`VerifyResult`.

::

    from cic_seeding.verify import VerifyOptions, run_verify
    result = run_verify(settings, VerifyOptions(importer="eth"), chain=my_chain)
    print(result.render_text())
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from cic_seeding.config import Settings
from cic_seeding.datadir import DataDir, Manifest, dataset_settings
from cic_seeding.errors import ConfigError, UsageError, VerifyError
from cic_seeding.verify._memo import BatchMemo
from cic_seeding.verify.base import Check, CheckContext, ImportState, VerifyUser
from cic_seeding.verify.port import VerifyChain
from cic_seeding.verify.registry import check_ids, get_check, unknown_check
from cic_seeding.verify.result import CheckResult, Failure, VerifyResult
from cic_seeding.verify.tolerance import Tolerance
from cic_seeding.verify.users import load_import, load_users

log = logging.getLogger(__name__)

#: Backends that may be skipped, and the flag that skips each.
SKIP_FLAGS = {"custodial": "--skip-custodial", "meta": "--skip-metadata", "ussd": "--skip-ussd"}

Connect = Callable[[Settings], VerifyChain]
Progress = Callable[[int, int], None]  # (users done, users in all)


@dataclass(frozen=True)
class VerifyOptions:
    """What to verify. ``include`` empty means every installed check; ``skip_backends`` holds
    keys of :data:`SKIP_FLAGS`; ``balance_adjust`` is the ``--balance-adjust`` text."""

    importer: str = "eth"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    skip_backends: frozenset[str] = frozenset()
    stop_on_failure: bool = False
    batch_size: int = 500
    balance_adjust: str | None = None


def select_checks(options: VerifyOptions, settings: Settings | None = None
                  ) -> tuple[list[type[Check]], dict[type[Check], str]]:
    """``(checks to run, {check skipped: why})`` in id order; only these are loaded.

    A check is skipped when ``--skip-*`` names one of its backends, or (given ``settings``)
    when it says it is :meth:`~Check.unavailable` and was not asked for by name: the metadata
    checks run by default only when a metadata server is configured.

    UsageError for an unknown id (with near matches and the valid ids), an unknown backend to
    skip, or a selection that leaves nothing to run; ConfigError for a check asked for by name
    (``--include``) that cannot run with ``settings``.
    """
    ids = check_ids()
    for name in (*options.include, *options.exclude):
        if name not in ids:
            raise unknown_check(name, ids)
    for backend in options.skip_backends:
        if backend not in SKIP_FLAGS:
            raise UsageError(f"cannot skip backend {backend!r}",
                             hint=f"skippable backends: {', '.join(SKIP_FLAGS)}")
    chosen = [get_check(i) for i in ids
              if (not options.include or i in options.include) and i not in options.exclude]
    skipped = {c: SKIP_FLAGS[b] for c in chosen for b in c.backends if b in options.skip_backends}
    for c in chosen:
        why = None if c in skipped or settings is None else c.unavailable(settings)
        if why is None:
            continue
        if c.id in options.include:
            flags = [SKIP_FLAGS[b] for b in c.backends if b in SKIP_FLAGS]
            raise ConfigError(f"check {c.id!r} cannot run: {why}",
                              hint="configure it, or leave it out with "
                              + " or ".join([*flags, f"--exclude {c.id}"]))
        skipped[c] = why
    run = [c for c in chosen if c not in skipped]
    if not run:
        raise UsageError("no checks left to run after --include/--exclude/--skip-*",
                         hint=f"installed checks: {', '.join(ids)}")
    return run, skipped


def connect_chain(settings: Settings) -> VerifyChain:
    """The chain the settings name (``--devnet DIR`` or ``-p/-r``), read in batches: one
    eth_call per question and batch where the node runs state-overridden code."""
    try:
        from cic_seeding.chain.connect import verify_chain
        from cic_seeding.verify._batch_reader import BatchReaderChain
    except ImportError as exc:
        raise VerifyError(f"this cic-seeding cannot read the chain for the verifier yet: {exc}",
                          hint="run only checks that need no chain, e.g. --include local_key"
                          ) from None
    return BatchReaderChain(verify_chain(settings))


def run_verify(settings: Settings, options: VerifyOptions | None = None, *,
               chain: VerifyChain | None = None, connect: Connect | None = None,
               progress: Progress | None = None) -> VerifyResult:
    """Verify every user of ``settings.data_dir`` with the selected checks.

    A chain is used only if a selected check needs one: ``chain`` if given, else
    ``connect(settings)`` (default :func:`connect_chain`). ``progress(done, total)`` is called
    after each batch. Failing checks are in the result; errors that stop the run
    (bad options, unreadable data, chain down) are raised as CicSeedError.
    """
    options = options or VerifyOptions()
    settings = dataset_settings(settings)
    tolerance = Tolerance.parse(options.balance_adjust) if options.balance_adjust else None
    if options.batch_size < 1:
        raise UsageError(f"batch size must be at least 1, got {options.batch_size}")
    run, skipped = select_checks(options, settings)
    data = DataDir(settings.data_dir)
    manifest = data.manifest()
    imports = load_import(settings, options.importer)
    users = load_users(data, imports)
    memo = None
    if any("chain" in c.backends for c in run):
        memo = _connected(settings, chain, connect)
    ctx = _context(settings, data, manifest, memo, tolerance, imports)
    result = _blank_result(settings, options, users, ctx, run, skipped)
    if imports.known == 0 and any(c.needs_target or "state" in c.backends for c in run):
        result.notes.append(f"importer {options.importer!r} has no users in the state store "
                            f"{imports.location}: nobody was imported by it "
                            "(wrong --importer?)")
    started = time.perf_counter()
    _run_batches([c(ctx) for c in run], users, options, result, memo, progress)
    result.seconds = time.perf_counter() - started
    return result


def verify_settings(settings: Settings, options: VerifyOptions | None = None) -> VerifyResult:
    """Every installed check that can run with ``settings`` over ``settings.data_dir``, on the
    chain the settings name (the others are reported as skipped, with why)."""
    return run_verify(settings, options)


def _connected(settings: Settings, chain: VerifyChain | None, connect: Connect | None
               ) -> BatchMemo:
    if chain is None:
        chain = (connect or connect_chain)(settings)
    wanted = settings.token_symbol
    if wanted and chain.token_symbol != wanted:
        raise VerifyError(f"the chain's token is {chain.token_symbol} at {chain.token_address}, "
                          f"not the token symbol {wanted!r} asked for",
                          hint="the chain connection must resolve --token-symbol")
    return BatchMemo(chain)


def _context(settings: Settings, data: DataDir, manifest: Manifest, chain: BatchMemo | None,
             tolerance: Tolerance | None, imports: ImportState) -> CheckContext:
    return CheckContext(
        settings=settings, data=data, chain=chain,
        faucet_amount=chain.faucet_amount() if chain is not None else 0,
        dataset_decimals=manifest.decimals,
        token_decimals=chain.token_decimals if chain is not None else manifest.decimals,
        balance_adjust=tolerance, imports=imports)


def _blank_result(settings: Settings, options: VerifyOptions, users: list[VerifyUser],
                  ctx: CheckContext, run: list[type[Check]],
                  skipped: dict[type[Check], str]) -> VerifyResult:
    result = VerifyResult(
        directory=settings.data_dir, importer=options.importer, users=len(users),
        token_symbol=ctx.chain.token_symbol if ctx.chain else None,
        token_address=ctx.chain.token_address if ctx.chain else None,
        token_decimals=ctx.token_decimals if ctx.chain else None,
        faucet_amount=ctx.faucet_amount if ctx.chain else None,
        balance_adjust=ctx.balance_adjust.describe() if ctx.balance_adjust else None)
    for cls in sorted([*run, *skipped], key=lambda c: c.id):
        why = skipped.get(cls)
        result.checks[cls.id] = CheckResult(
            cls.id, cls.description, tuple(cls.groups), total=len(users),
            skipped=len(users) if why else 0, skipped_because=why)
    return result


def _run_batches(checks: list[Check], users: list[VerifyUser], options: VerifyOptions,
                 result: VerifyResult, memo: BatchMemo | None, progress: Progress | None
                 ) -> None:
    """Each check once per user, batch by batch, then each check's :meth:`~Check.finish`;
    with ``stop_on_failure`` stop after the first check that fails a user, and count every
    user not checked as skipped."""
    try:
        for start in range(0, len(users), options.batch_size):
            batch = users[start:start + options.batch_size]
            if memo is not None:
                memo.reset()
            for check in checks:
                _record(result.checks[check.id], batch, check)
                if options.stop_on_failure and result.checks[check.id].failed:
                    result.stopped_early = True
                    return
            log.debug("verified users %d..%d", start, start + len(batch) - 1)
            if progress is not None:
                progress(start + len(batch), len(users))
        for check in checks:
            result.checks[check.id].problems.extend(check.finish())
    finally:
        for check in checks:
            check.close()
        for c in result.checks.values():
            c.skipped += c.total - c.ok - c.failed - c.skipped


def _record(into: CheckResult, batch: list[VerifyUser], check: Check) -> None:
    started = time.perf_counter()
    verdicts = check.verify(batch)
    into.seconds += time.perf_counter() - started
    for user in batch:
        verdict = verdicts[user.address]
        if verdict.outcome == "ok":
            into.ok += 1
            into.passed.append(user.address)
        elif verdict.outcome == "failed":
            into.failed += 1
            into.failures.append(Failure(user.address, verdict.reason, user.target))
        elif verdict.outcome == "skipped":
            into.skipped += 1
        else:
            raise VerifyError(f"check {check.id!r} answered {verdict!r} for {user.address}",
                              hint="a check must answer Verdict.passed/failed/skipped")
