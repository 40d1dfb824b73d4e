#!/usr/bin/env python3
"""Write DIR/pins.csv (phone, seeded 4-digit PIN, bcrypt hash) for every user of DIR.

Usage: python create_import_pins.py DIR [--rounds N]. Then `cic-seed import ussd-pins --dir
DIR` puts the hashes into the USSD gateway's database, so seeded users can log in.
"""

import argparse
import sys

from cic_seeding.errors import CicSeedError
from cic_seeding.ussd.pins import DEFAULT_ROUNDS, write_pins

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", help="data directory (cic-seed generate)")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="bcrypt cost")
    args = parser.parse_args()
    try:
        print(write_pins(args.dir, rounds=args.rounds))
    except CicSeedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
