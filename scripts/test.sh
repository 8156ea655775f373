#!/usr/bin/env bash
# One command: install everything the tests need (Python packages into .venv, Debian's chromium, an emoji
# font and a Chinese one (fonts-noto-cjk) for the browser tests' screenshots), then run them. Arguments go
# to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$(bash scripts/install.sh requirements-dev.txt | tail -n 1)"
if ! command -v chromium >/dev/null 2>&1 || ! dpkg -s fonts-noto-color-emoji >/dev/null 2>&1 \
   || ! dpkg -s fonts-noto-cjk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium fonts-noto-color-emoji fonts-noto-cjk >/dev/null
fi
exec "$PY" -m pytest "$@"
