"""Entry point of ``cic-seed``: the lazy group of every command (``cli.app.COMMANDS``).

Nothing here imports a command module: ``cic-seed --help`` lists the commands from their
summaries, and ``cic-seed CMD ...`` imports CMD's module only.
"""

from __future__ import annotations

import sys

from cic_seeding.cli.app import cli

#: Top-level module of an optional dependency -> the extras of cic-seeding that install it,
#: the one to suggest first (``[project.optional-dependencies]``; ``devnet`` and ``all`` hold
#: every one; tests/test_packaging.py keeps the two in step).
OPTIONAL_MODULES: dict[str, tuple[str, ...]] = {
    "bcrypt": ("ussd",),
    "celery": ("custodial", "ussd"),
    "kombu": ("custodial", "ussd"),
    "psycopg2": ("postgres", "custodial", "ussd"),
    "redis": ("custodial", "ussd"),
    "starlette": ("meta", "ussd"),
    "uvicorn": ("meta", "ussd"),
}


def missing_extra(exc: BaseException) -> str | None:
    """The one-line error for an ImportError of an optional dependency, else None."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    module = exc.name.split(".")[0]
    extras = OPTIONAL_MODULES.get(module)
    if extras is None:
        return None
    return (f"error: this needs {module}, an optional dependency: pip install "
            f"'cic-seeding[{extras[0]}]' (it comes with "
            f"{', '.join(f'[{e}]' for e in (*extras, 'all'))})")


def main(argv: list[str] | None = None) -> int:
    """Run ``cic-seed`` with ``argv``; returns the exit code (click's usage errors exit 2)."""
    try:
        rv = cli.main(args=argv, prog_name="cic-seed", standalone_mode=False)
    except Exception as exc:  # click's own usage errors
        import click

        if isinstance(exc, click.UsageError):  # one line, like every other error
            where = exc.ctx.command_path if exc.ctx else "cic-seed"
            click.echo(f"error: {exc.format_message()} (see {where} -h)", err=True)
            return exc.exit_code
        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        if isinstance(exc, click.exceptions.Abort):
            click.echo("aborted", err=True)
            return 130
        message = missing_extra(exc)
        if message is not None:
            click.echo(message, err=True)
            return 2
        raise
    return rv if isinstance(rv, int) else 0


def run_script(command: list[str]) -> None:
    """For the top-level scripts: ``cic-seed <command...> <argv>``, then exit."""
    sys.exit(main([*command, *sys.argv[1:]]))


if __name__ == "__main__":
    sys.exit(main())
