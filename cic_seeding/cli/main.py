"""Entry point of ``cic-seed``: the group with every command module attached."""

from __future__ import annotations

import sys

from cic_seeding.cli import (
    config_cmd,
    demo_cmd,
    devnet_cmd,
    doctor_cmd,
    generate_cmd,
    import_cmd,
    verify_cmd,
)
from cic_seeding.cli.app import cli

COMMAND_MODULES = (config_cmd, demo_cmd, devnet_cmd, doctor_cmd, generate_cmd, import_cmd,
                   verify_cmd)


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
        raise
    return rv if isinstance(rv, int) else 0


def run_script(command: list[str]) -> None:
    """For the top-level scripts: ``cic-seed <command...> <argv>``, then exit."""
    sys.exit(main([*command, *sys.argv[1:]]))


if __name__ == "__main__":
    sys.exit(main())
