#!/usr/bin/env python3
"""Import users as sovereign accounts: same as ``cic-seed import eth``."""

from cic_seeding.cli.main import run_script

if __name__ == "__main__":
    run_script(["import", "eth"])
