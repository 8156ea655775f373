#!/usr/bin/env bash
# One command: install, then start Transfer Studio on http://localhost:8501
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh requirements.txt
exec python -m streamlit run app.py --browser.gatherUsageStats=false "$@"
