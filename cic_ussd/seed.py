#!/usr/bin/env python3
"""Register users through the USSD gateway's menus: same as ``cic-seed import cic_ussd``."""

from cic_seeding.cli.main import run_script

if __name__ == "__main__":
    run_script(["import", "cic_ussd"])
