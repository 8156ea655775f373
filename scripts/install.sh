#!/usr/bin/env bash
# Installs what the app needs into the current Python (3.11). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --disable-pip-version-check -q -r "${1:-requirements.txt}"
python -m pip install --disable-pip-version-check -q --no-deps -r requirements-nodeps.txt
