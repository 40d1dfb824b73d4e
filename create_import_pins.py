#!/usr/bin/env python3
"""Write pins.csv (phone, seeded PIN, bcrypt hash) for every user: same as ``cic-seed pins``.

``python create_import_pins.py DIR`` writes DIR/pins.csv; the older form
``python create_import_pins.py -c config -v --userdir USERS [pinsdir] PINS`` writes PINS/pins.csv
for the users of USERS. Then ``python cic_ussd/import_pins.py PINS`` (= ``cic-seed import
ussd-pins``) puts the hashes into the USSD gateway's database, so seeded users can log in.
"""

from cic_seeding.cli.main import run_script

if __name__ == "__main__":
    run_script(["pins"])
