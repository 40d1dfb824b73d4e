#!/usr/bin/env python3
"""Write every imported user's metadata documents: ``cic-seed import cic_meta``."""

from cic_seeding.cli.main import run_script

if __name__ == "__main__":
    run_script(["import", "cic_meta"])
