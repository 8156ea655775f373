#!/usr/bin/env bash
# One command: install (into .venv, once), then start Transfer Studio on http://localhost:8501
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$(bash scripts/install.sh requirements.txt | tail -n 1)"
exec "$PY" -m streamlit run app.py --browser.gatherUsageStats=false "$@"
