#!/usr/bin/env python3
"""Pay the opening balances of custodial users: same as ``cic-seed sync cic_eth``."""

from cic_seeding.cli.main import run_script

if __name__ == "__main__":
    run_script(["sync", "cic_eth"])
