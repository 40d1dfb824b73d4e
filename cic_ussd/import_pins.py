#!/usr/bin/env python3
"""Set seeded PIN hashes, status and language of USSD gateway accounts: same as ``cic-seed
import ussd-pins``. Takes the data directory, or the pins directory create_import_pins.py
wrote (the older ``import_pins.py -c config -v [pinsdir] PINS``)."""

from cic_seeding.cli.main import run_script

if __name__ == "__main__":
    run_script(["import", "ussd-pins"])
