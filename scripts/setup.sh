#!/usr/bin/env bash
# One-time set-up: a virtualenv with the pinned Python packages and this project, and the npm
# packages (anvil, solc). Safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q -r requirements.txt 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q --no-deps -e . 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import web3, faker, cic_seeding" # fail loudly if the install did not work
# npm install (not ci): the lock file cannot list every platform's optional anvil binary.
npm install --no-audit --no-fund --loglevel=error
test -x node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil
echo "set-up done: activate with 'source .venv/bin/activate'"
