#!/usr/bin/env python3
"""Rewrite the environment-variable table in README.md from the Settings declarations."""

import re
import sys
from pathlib import Path

from cic_seeding.config import environment_table

readme = Path(__file__).resolve().parent.parent / "README.md"
rows = ["| variable | key | default | meaning |", "|---|---|---|---|"]
rows += [f"| `{v}` | `{k}` | {d or '-'} | {h} |" for v, k, d, h in environment_table()]
rows.append("| `CIC_CONFIG` | - | - | config file to read (TOML), or a config directory of the "
            "older data-seeding scripts (ini files; see MIGRATING.md) |")
rows.append("| `CONFINI_ENV_PREFIX` | - | - | prefix of the older environment names "
            "(`PREFIX_RPC_PROVIDER` ...; see MIGRATING.md) |")
rows.append("| `CIC_ANVIL_BIN` | - | - | anvil binary to run (default: the npm package's "
            "under the checkout's, then the current directory's node_modules, then `anvil` on "
            "PATH) |")
rows.append("| `CIC_TEST_PG_URL` | - | postgresql://postgres@127.0.0.1:5432/cic_seeding_test | "
            "PostgreSQL the tests use (the default one is started, and its database created, "
            "at session start) |")
text = readme.read_text()
new = re.sub(r"<!-- env-table -->.*<!-- /env-table -->",
             "<!-- env-table -->\n" + "\n".join(rows) + "\n<!-- /env-table -->", text, flags=re.S)
if "--check" in sys.argv:
    sys.exit(0 if new == text else "README env table is stale: run python scripts/readme_env.py")
readme.write_text(new)
