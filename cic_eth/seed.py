#!/usr/bin/env python3
"""Import users as accounts of the custodial engine: same as ``cic-seed import cic_eth``."""

from cic_seeding.cli.main import run_script

if __name__ == "__main__":
    run_script(["import", "cic_eth"])
