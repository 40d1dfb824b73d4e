#!/usr/bin/env python3
"""Pay the opening balances of sovereign users: same as ``cic-seed sync eth``."""

from cic_seeding.cli.main import run_script

if __name__ == "__main__":
    run_script(["sync", "eth"])
