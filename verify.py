#!/usr/bin/env python3
"""Verify a seeded network against its data directory: same as ``cic-seed verify``."""

from cic_seeding.cli.main import run_script

if __name__ == "__main__":
    run_script(["verify"])
