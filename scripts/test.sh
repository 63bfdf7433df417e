#!/usr/bin/env bash
# Install everything the test suite needs into .venv and run the whole suite.
# Usage: scripts/test.sh [pytest args...]     (CI runs this via .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

# tmux: the shell's real-terminal test drives agx inside it.
if ! command -v tmux >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && apt-get install -y -qq tmux) >/dev/null
  elif command -v brew >/dev/null 2>&1; then
    brew install tmux
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
export PIP_DISABLE_PIP_VERSION_CHECK=1
# llama-cpp-python builds from source here (~6 min the first time; pip caches the wheel).
.venv/bin/python -m pip install -q -e '.[test]'
exec .venv/bin/python -m pytest -q "$@"
