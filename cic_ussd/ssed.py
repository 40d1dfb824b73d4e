#!/usr/bin/env python3
"""``cic_ussd/ssed.py``: the older README's spelling of ``cic_ussd/seed.py`` (people copy it as
written); the same as ``cic-seed import cic_ussd``."""

from cic_seeding.cli.main import run_script

if __name__ == "__main__":
    run_script(["import", "cic_ussd"])
