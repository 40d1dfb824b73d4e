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
from cic_seeding.errors import CicSeedError, ConfigError, UsageError, VerifyError
from cic_seeding.verify._memo import BatchMemo
from cic_seeding.verify.base import (
    FAILED,
    NOT_APPLICABLE,
    OK,
    SKIPPED,
    Check,
    CheckContext,
    ImportState,
    VerifyUser,
)
from cic_seeding.verify.port import VerifyChain
from cic_seeding.verify.registry import check_ids, get_check, unknown_check
from cic_seeding.verify.result import CheckResult, Failure, VerifyResult
from cic_seeding.verify.tolerance import Tolerance
from cic_seeding.verify.users import load_import, load_users

log = logging.getLogger(__name__)

#: Backends that may be skipped, and the flag that skips each.
SKIP_FLAGS = {"custodial": "--skip-custodial", "meta": "--skip-metadata", "ussd": "--skip-ussd"}
#: The services behind those backends, for "did not answer" reasons.
SERVICES = {"custodial": "the custodial engine", "meta": "the metadata server",
            "ussd": "the USSD gateway"}

Connect = Callable[[Settings], VerifyChain]
Progress = Callable[[int, int], None]  # (users done, users in all)


@dataclass(frozen=True)
class VerifyOptions:
    """What to verify. ``importer`` None means the importers that registered the data
    directory's users (:func:`importers_to_verify`); ``include`` empty means every installed
    check; ``skip_backends`` holds keys of :data:`SKIP_FLAGS`; ``balance_adjust`` is the
    ``--balance-adjust`` text; with ``strict`` a check that applies but is skipped fails the
    run."""

    importer: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    skip_backends: frozenset[str] = frozenset()
    stop_on_failure: bool = False
    batch_size: int = 2000
    balance_adjust: str | None = None
    strict: bool = False


@dataclass(frozen=True)
class CheckPlan:
    """The selected checks in id order: those to run, those skipped (why, and whether
    ``--skip-*`` asked for it) and those that concern none of the users (which kind they are)."""

    run: list[type[Check]]
    skipped: dict[type[Check], str]
    deliberate: frozenset[type[Check]]
    not_applicable: dict[type[Check], str]


def select_checks(options: VerifyOptions, settings: Settings | None = None
                  ) -> tuple[list[type[Check]], dict[type[Check], str]]:
    """``(checks to run, {check skipped: why})`` in id order (:func:`plan_checks` without
    knowing the importer's users)."""
    plan = plan_checks(options, settings)
    return plan.run, plan.skipped


def plan_checks(options: VerifyOptions, settings: Settings | None = None,
                imports: ImportState | None = None) -> CheckPlan:
    """Which selected checks run; only these are loaded.

    Given ``imports``, a check that concerns none of the importer's users
    (:meth:`~Check.not_applicable_to`) is not applicable: never run, never a skip. A check is
    skipped when ``--skip-*`` names one of its backends, or (given ``settings``) when it says
    it is :meth:`~Check.unavailable` and was not asked for by name: the metadata checks run by
    default only when a metadata server is configured.

    UsageError for an unknown id (with near matches and the valid ids), an unknown backend to
    skip, or a selection that leaves nothing to run; ConfigError for a check asked for by name
    (``--include``) that cannot run with ``settings``.
    """
    ids = validate_options(options)
    chosen = [get_check(i) for i in ids
              if (not options.include or i in options.include) and i not in options.exclude]
    na = {c: why for c in chosen
          if imports is not None and (why := c.not_applicable_to(imports)) is not None}
    chosen = [c for c in chosen if c not in na]
    skipped = {c: SKIP_FLAGS[b] for c in chosen for b in c.backends if b in options.skip_backends}
    deliberate = frozenset(skipped)
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
        why = "".join(f"; {c.id} does not apply ({r})" for c, r in na.items())
        raise UsageError(f"no checks left to run after --include/--exclude/--skip-*{why}",
                         hint=f"installed checks: {', '.join(ids)}")
    return CheckPlan(run, skipped, deliberate, na)


def validate_options(options: VerifyOptions) -> list[str]:
    """The installed check ids; UsageError for an unknown id or backend in ``options``."""
    ids = check_ids()
    for name in (*options.include, *options.exclude):
        if name not in ids:
            raise unknown_check(name, ids)
    for backend in options.skip_backends:
        if backend not in SKIP_FLAGS:
            raise UsageError(f"cannot skip backend {backend!r}",
                             hint=f"skippable backends: {', '.join(SKIP_FLAGS)}")
    return ids


def connect_chain(settings: Settings) -> VerifyChain:
    """The chain the settings name (``--devnet DIR`` or ``-p/-r``), read in batches: one
    eth_call per question and batch where the node runs state-overridden code."""
    try:
        from cic_seeding.chain.batch_reader import BatchReaderChain
        from cic_seeding.chain.connect import verify_chain
    except ImportError as exc:
        raise VerifyError(f"this cic-seeding cannot read the chain for the verifier yet: {exc}",
                          hint="run only checks that need no chain, e.g. --include local_key"
                          ) from None
    return BatchReaderChain(verify_chain(settings))


def importers_to_verify(settings: Settings, options: VerifyOptions) -> list[str]:
    """``options.importer``, else every importer that registered users of the data directory
    (its state store knows: ``eth``, ``cic_eth`` ...; not ``cic_meta`` or the USSD account
    importers, which work on those users), else ``eth``."""
    if options.importer:
        return [options.importer]
    from cic_seeding.importers.registry import chain_importers_that_ran

    return chain_importers_that_ran(settings) or [DEFAULT_IMPORTER]


#: The importer verified when the state store names none (nobody was imported yet).
DEFAULT_IMPORTER = "eth"


def run_verify(settings: Settings, options: VerifyOptions | None = None, *,
               chain: VerifyChain | None = None, connect: Connect | None = None,
               progress: Progress | None = None) -> VerifyResult:
    """Verify every user of ``settings.data_dir`` with the selected checks.

    A chain is used only if a selected check needs one: ``chain`` if given, else
    ``connect(settings)`` (default :func:`connect_chain`). ``progress(done, total)`` is called
    before the first batch and after each. Failing checks are in the result; errors that stop
    the run (bad options, unreadable data, chain down) are raised as CicSeedError.

    Without ``options.importer`` the users of each importer that registered them are
    verified with that importer's checks (:func:`importers_to_verify`); with more than one,
    the result holds every importer's checks, their ids prefixed ``IMPORTER:``.
    """
    options = options or VerifyOptions()
    settings = dataset_settings(settings)
    if options.batch_size < 1:
        raise UsageError(f"batch size must be at least 1, got {options.batch_size}")
    validate_options(options)
    importers = importers_to_verify(settings, options)
    if len(importers) == 1:
        return _verify_one(settings, options, importers[0], chain, connect, progress)[0]
    parts: list[VerifyResult] = []
    refused: list[tuple[str, UsageError]] = []
    for n, name in enumerate(importers):
        try:
            part, chain = _verify_one(settings, options, name, chain, connect,
                                      _offset(progress, n, len(importers)))
        except UsageError as exc:  # none of the checks asked for concerns its users
            refused.append((name, exc))
            continue
        parts.append(part)
        if options.stop_on_failure and part.stopped_early:
            break
    if not parts:
        raise refused[0][1]
    result = combine(parts, options)
    result.notes += [f"importer {name!r} not verified: {exc}" for name, exc in refused]
    return result


def _verify_one(settings: Settings, options: VerifyOptions, importer: str,
                chain: VerifyChain | None, connect: Connect | None, progress: Progress | None
                ) -> tuple[VerifyResult, VerifyChain | None]:
    """The users of one importer with its checks; also the chain connected (for the next)."""
    tolerance = Tolerance.parse(options.balance_adjust) if options.balance_adjust else None
    data = DataDir(settings.data_dir)
    manifest = data.manifest()
    imports = load_import(settings, importer)
    plan = plan_checks(options, settings, imports)
    users = load_users(data, imports)
    memo = None
    if any("chain" in c.backends for c in plan.run):
        chain = chain if chain is not None else (connect or connect_chain)(settings)
        memo = _connected(settings, chain, None)
    ctx = _context(settings, data, manifest, memo, tolerance, imports)
    result = _blank_result(settings, options, importer, users, ctx, plan)
    if imports.known == 0 and any(c.needs_target or "state" in c.backends for c in plan.run):
        result.notes.append(f"importer {importer!r} has no users in the state store "
                            f"{imports.location}: nobody was imported by it "
                            "(wrong --importer?)")
    if settings.cache_provider:
        given = settings.source_of("cache_provider")
        result.notes.append(f"cache provider {settings.cache_provider} ({given}) is not "
                            "checked: this toolkit has no check of cic-cache")
    started = time.perf_counter()
    _run_batches([c(ctx) for c in plan.run], users, options, result, memo, progress)
    result.seconds = time.perf_counter() - started
    return result, chain


def _offset(progress: Progress | None, n: int, parts: int) -> Progress | None:
    """``progress`` of part ``n`` of ``parts`` runs over the same users, as one count."""
    if progress is None or parts == 1:
        return progress
    report = progress
    return lambda done, total: report(n * total + done, parts * total)


def combine(parts: list[VerifyResult], options: VerifyOptions) -> VerifyResult:
    """One result of the runs of several importers over one data directory: every check of
    each, its id prefixed with the importer's name (``eth:balance``)."""
    first = parts[0]
    result = VerifyResult(
        directory=first.directory, importer=" + ".join(p.importer for p in parts),
        users=first.users, token_symbol=first.token_symbol, token_address=first.token_address,
        token_decimals=first.token_decimals, faucet_amount=first.faucet_amount,
        balance_adjust=first.balance_adjust, strict=options.strict,
        stopped_early=any(p.stopped_early for p in parts),
        seconds=sum(p.seconds for p in parts))
    for part in parts:
        for check in part.checks.values():
            check.id = f"{part.importer}:{check.id}"
            result.checks[check.id] = check
        result.notes += [n for n in part.notes if n not in result.notes]
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


def _blank_result(settings: Settings, options: VerifyOptions, importer: str,
                  users: list[VerifyUser], ctx: CheckContext, plan: CheckPlan) -> VerifyResult:
    result = VerifyResult(
        directory=settings.data_dir, importer=importer, users=len(users),
        token_symbol=ctx.chain.token_symbol if ctx.chain else None,
        token_address=ctx.chain.token_address if ctx.chain else None,
        token_decimals=ctx.token_decimals if ctx.chain else None,
        faucet_amount=ctx.faucet_amount if ctx.chain else None,
        balance_adjust=ctx.balance_adjust.describe() if ctx.balance_adjust else None,
        strict=options.strict)
    for cls in sorted([*plan.run, *plan.skipped, *plan.not_applicable], key=lambda c: c.id):
        why, na = plan.skipped.get(cls), plan.not_applicable.get(cls)
        result.checks[cls.id] = CheckResult(
            cls.id, cls.description, tuple(cls.groups), total=len(users),
            skipped=len(users) if why else 0, skipped_because=why,
            skip_deliberate=cls in plan.deliberate,
            not_applicable=len(users) if na else 0, not_applicable_because=na)
    return result


def _run_batches(checks: list[Check], users: list[VerifyUser], options: VerifyOptions,
                 result: VerifyResult, memo: BatchMemo | None, progress: Progress | None
                 ) -> None:
    """Each check once per user, batch by batch, then each check's :meth:`~Check.finish`;
    with ``stop_on_failure`` stop after the first check that fails a user, and count every
    user not checked as skipped. A service that stops answering (after its client's retries)
    skips the checks that need it for the users left, saying so."""
    down: dict[str, str] = {}  # backend -> why its checks stopped
    if progress is not None:
        progress(0, len(users))  # where the count starts
    try:
        for start in range(0, len(users), options.batch_size):
            batch = users[start:start + options.batch_size]
            if memo is not None:
                memo.reset()
            for check in checks:
                into = result.checks[check.id]
                _record(into, batch, check, down)
                if options.stop_on_failure and into.failed:
                    result.stopped_early = True
                    return
            log.debug("verified users %d..%d", start, start + len(batch) - 1)
            if progress is not None:
                progress(start + len(batch), len(users))
        for check in checks:
            if result.checks[check.id].skipped_because is None:
                result.checks[check.id].problems.extend(check.finish())
    finally:
        for check in checks:
            check.close()
        for c in result.checks.values():
            c.skipped += c.total - c.ok - c.failed - c.skipped - c.not_applicable
            if c.total and c.not_applicable == c.total and c.not_applicable_because is None:
                c.not_applicable_because = c.na_reasons.most_common(1)[0][0]


def _record(into: CheckResult, batch: list[VerifyUser], check: Check,
            down: dict[str, str]) -> None:
    """Verify ``batch`` with ``check`` into ``into``; when a service the check needs is down,
    set ``into.skipped_because`` instead (the check stops: the users it would have checked
    are counted skipped at the end, those it does not concern not applicable)."""
    todo = []
    for user in batch:
        why = check.not_applicable(user)
        if why is None:
            todo.append(user)
        else:
            into.not_applicable += 1
            into.na_reasons[why] += 1
    services = [b for b in check.backends if b in SERVICES]
    gone = next((down[b] for b in services if b in down), None)
    if into.skipped_because is not None or gone is not None:
        into.skipped_because = into.skipped_because or gone
        return
    started = time.perf_counter()
    try:
        verdicts = check.verify(todo) if todo else {}
    except CicSeedError as exc:
        if not (exc.transient and services):
            raise
        log.warning("check %s stops: %s", check.id, exc)
        why = f"{SERVICES[services[0]]} did not answer: {one_line(str(exc))}"
        down.update((b, why) for b in services)
        into.skipped_because = why
        return
    finally:
        into.seconds += time.perf_counter() - started
    for user in todo:
        verdict = verdicts[user.address]
        if verdict.outcome == OK:
            into.ok += 1
            into.passed.append(user.address)
        elif verdict.outcome == FAILED:
            into.failed += 1
            into.failures.append(Failure(user.address, verdict.reason, user.target,
                                         verdict.detail, verdict.error))
        elif verdict.outcome == SKIPPED:
            into.skipped += 1
            into.skip_reasons[verdict.reason] += 1
        elif verdict.outcome == NOT_APPLICABLE:
            into.not_applicable += 1
            into.na_reasons[verdict.reason] += 1
        else:
            raise VerifyError(f"check {check.id!r} answered {verdict!r} for {user.address}",
                              hint="a check must answer Verdict.passed/failed/skipped/"
                              "not_applicable")


def one_line(text: str) -> str:
    """``text`` on one line (a library's multi-line message joined by spaces)."""
    return " ".join(part.strip() for part in text.strip().splitlines() if part.strip())
