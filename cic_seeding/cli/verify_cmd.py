"""``cic-seed verify DIR`` (= ``verify.py DIR``): prove a seeded network matches its data."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cic_seeding.cli.app import cli, handles_errors, settings_from, verbosity_options
from cic_seeding.cli.chain_options import chain_flags, chain_options
from cic_seeding.cli.legacy import dir_option, directory_of, noted_option, setting_option
from cic_seeding.cli.progress import stage
from cic_seeding.errors import UsageError, VerifyError

if TYPE_CHECKING:  # the verifier is imported when the command runs: -h stays quick
    from cic_seeding.config import Settings
    from cic_seeding.verify import VerifyOptions, VerifyResult
    from cic_seeding.verify.runner import Connect

#: How the command reaches the chain (None: ``cic_seeding.verify.connect_chain``); tests
#: replace it with a fake.
CONNECT: Connect | None = None


@cli.command("verify")
@click.argument("paths", nargs=-1, metavar="[DIR]")
@dir_option
@chain_options
@click.option("--state-url", help="State store: sqlite path or postgresql:// URL.")
@click.option("--meta-url", "--meta-provider", "meta_url",
              help="Metadata server URL (the metadata checks run when one is set; "
              "--meta-provider: the older spelling).")
@setting_option("--ussd-provider", setting="ussd_url", metavar="URL",
                help="Older spelling of the USSD gateway URL (setting ussd_url).")
@setting_option("--cache-provider", setting="cache_provider", metavar="URL",
                help="cic-cache URL of the older verify: accepted and named in the report as "
                "not checked (this toolkit has no cache check).")
@click.option("--importer",
              help="Importer whose users to verify (default: the importers that registered "
              "DIR's users, each with its own checks, from its state store).")
@click.option("--include", multiple=True, metavar="ID", help="Run only this check (repeatable).")
@click.option("--exclude", multiple=True, metavar="ID", help="Do not run this check (repeatable).")
@click.option("--skip-custodial", is_flag=True, help="Skip checks needing the custodial engine.")
@click.option("--skip-metadata", is_flag=True, help="Skip checks needing the metadata server.")
@click.option("--skip-ussd", is_flag=True, help="Skip checks needing the USSD gateway.")
@noted_option("--skip-cache", is_flag=True,
              why="this toolkit has no cache check (see --cache-provider)")
@click.option("--skip-all", is_flag=True,
              help="Run no check: only validate the data directory (cic-seed validate), as "
              "the older verify did.")
@click.option("--list-verifications", is_flag=True, help="List check ids with descriptions.")
@click.option("-x", "--exit-on-error", "stop_on_failure", is_flag=True,
              help="Stop at the first failure.")
@click.option("--strict", is_flag=True,
              help="Fail when a check that applies is skipped (its service not configured or "
                   "down); --skip-* and --exclude still leave checks out.")
@click.option("--results-dir", type=click.Path(file_okay=False),
              help="Write success_<id> and error_<id> address lists here.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "junit"]), default="text",
              show_default=True, help="Report format.")
@click.option("--output", type=click.Path(dir_okay=False),
              help="Write the report here (stdout then gets the text summary).")
@click.option("--report", "html_report", type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write a self-contained HTML report (checks, balances chart, "
                   "failures) to FILE.")
@click.option("--balance-adjust", metavar="[±]N[%]",
              help="Accept a balance deviation: N token units or P% (+ above / - below only).")
@click.option("--batch-size", type=int, default=2000, show_default=True,
              help="Users checked per batch of chain calls (500 addresses an eth_call).")
@verbosity_options
@click.pass_context
@handles_errors
def verify_command(ctx: click.Context, /, paths: tuple[str, ...], data_dir: str | None,
                   list_verifications: bool, skip_all: bool, fmt: str, output: str | None,
                   results_dir: str | None, html_report: str | None, verbose: int, quiet: bool,
                   **opts: Any) -> int:
    """Verify every user of DIR on the network; exit 0 if all checks pass, 1 if any fails
    (or, with --strict, a check that applies was skipped)."""
    if list_verifications:
        return _list_checks()
    directory = directory_of(paths, data_dir)
    if directory is None:
        raise UsageError("missing DIR", hint="give the data directory to verify")
    settings = settings_from(ctx, verbose, quiet, data_dir=directory,
                             state_url=opts.pop("state_url"), meta_url=opts.pop("meta_url"),
                             **chain_flags(opts))
    if skip_all:
        return _validate_only(directory)
    result = _run(settings, _options(**opts), quiet)
    if results_dir:
        result.write_results_dir(results_dir)
    if html_report:
        from cic_seeding.verify.report import write_html_report

        written = write_html_report(result, html_report)
        if not quiet:
            click.echo(f"HTML report: {written}", err=True)
    _report(result, fmt, output, quiet, verbose)
    return 0 if result.ok else 1


def _validate_only(directory: str) -> int:
    """``--skip-all``: the data directory's rules, no check (the older verify's meaning)."""
    from cic_seeding.generate.validate import validate

    result = validate(directory)
    click.echo(result.render_text())
    return 0 if result.passed else 1


def _options(importer: str | None, include: tuple[str, ...], exclude: tuple[str, ...],
             skip_custodial: bool, skip_metadata: bool, skip_ussd: bool, stop_on_failure: bool,
             strict: bool, balance_adjust: str | None, batch_size: int) -> VerifyOptions:
    from cic_seeding.verify import VerifyOptions

    flags = {"custodial": skip_custodial, "meta": skip_metadata, "ussd": skip_ussd}
    return VerifyOptions(importer=importer, include=include, exclude=exclude,
                         skip_backends=frozenset(b for b, on in flags.items() if on),
                         stop_on_failure=stop_on_failure, batch_size=batch_size,
                         balance_adjust=balance_adjust, strict=strict)


def _run(settings: Settings, options: VerifyOptions, quiet: bool) -> VerifyResult:
    """Verify with progress shown; the stage lands in the data directory's timeline before
    the HTML report reads it."""
    from cic_seeding.verify import connect_chain, run_verify

    with stage("verify", quiet, data_dir=settings.data_dir) as shown:
        result = run_verify(settings, options, connect=CONNECT or connect_chain,
                            progress=shown.update)
        shown.ok = result.ok
    return result


def _report(result: VerifyResult, fmt: str, output: str | None, quiet: bool,
            verbose: int) -> None:
    """The report in ``fmt`` to ``output`` (or stdout); the text one (failing users with the
    exceptions behind them at -vv) on stdout unless -q; with -q a failed run's summary line on
    stderr."""
    rendered = {"text": lambda: result.render_text(verbose=verbose),
                "json": result.render_json, "junit": result.render_junit}[fmt]
    text = result.render_text(colour=sys.stdout.isatty(), verbose=verbose)
    if output:
        try:
            Path(output).write_text(rendered(), encoding="utf-8")
        except OSError as exc:
            raise VerifyError(f"cannot write the report to {output}: {exc}") from None
        if not quiet:
            click.echo(text, nl=False)
    elif fmt != "text":
        click.echo(rendered(), nl=False)
    elif not quiet:
        click.echo(text, nl=False)
    if quiet and not result.ok:  # -q keeps errors: the one line saying why the gate failed
        click.echo(f"error: verify: {result.summary()}", err=True)


def _list_checks() -> int:
    from cic_seeding.verify import all_checks

    checks = all_checks()
    width = max((len(c.id) for c in checks), default=0)
    for c in checks:
        needs = ", ".join(c.backends) or "-"
        click.echo(f"{c.id:<{width}}  {c.description}  [groups: {', '.join(c.groups) or '-'}; "
                   f"needs: {needs}]")
    return 0
