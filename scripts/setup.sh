#!/usr/bin/env bash
# One-time set-up: a virtualenv with the pinned Python packages and this project, and the npm
# packages (anvil, solc; ganache and hardhat for the node matrix). Safe to rerun.
# requirements.txt is the full pinned set (core, every extra, the test tools), made from
# pyproject.toml by: pip-compile --extra all --extra dev -o requirements.txt pyproject.toml
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q -r requirements.txt 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q --no-deps -e . 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import faker, psutil, cic_seeding" # fail loudly if the install did not work

# npm ci: exactly what the committed package-lock.json lists. It lists every platform's
# optional anvil binary (@foundry-rs/anvil-<os>-<cpu>); npm installs this platform's one.
# Skipped when node_modules was made from this very lock file and anvil is there.
lock_sum="$(.venv/bin/python -c \
    "import hashlib; print(hashlib.sha256(open('package-lock.json', 'rb').read()).hexdigest())")"
anvil_ok() { .venv/bin/python -c "from cic_devnet.anvil import anvil_binary; anvil_binary()" \
    2>/dev/null; }
if [ "$(cat node_modules/.cic-lock-sha256 2>/dev/null || true)" != "$lock_sum" ] || ! anvil_ok
then
    npm ci --no-audit --no-fund --loglevel=error
    echo "$lock_sum" > node_modules/.cic-lock-sha256
fi
anvil_ok || { echo "anvil is missing after npm ci (see node_modules/@foundry-rs)"; exit 1; }
echo "set-up done: activate with 'source .venv/bin/activate'"
