#!/usr/bin/env python3
"""Generate users into a data directory: same as ``cic-seed generate``."""

from cic_seeding.cli.main import run_script

if __name__ == "__main__":
    run_script(["generate"])
