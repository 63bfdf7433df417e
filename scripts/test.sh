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

# The same install a user runs: a llama.cpp build with only the instruction sets this machine
# executes (~6 min the first time; the wheel is kept per build flags in ~/.cache/agx/wheels).
scripts/install.sh --venv .venv --extras test
exec .venv/bin/python -m pytest -q "$@"
