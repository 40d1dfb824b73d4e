#!/usr/bin/env python3
"""Set status and language of USSD gateway accounts (PINs kept): same as ``cic-seed import
ussd-data`` (the older ``import_ussd_data.py -c config -v [userdir] USERS``)."""

from cic_seeding.cli.main import run_script

if __name__ == "__main__":
    run_script(["import", "ussd-data"])
