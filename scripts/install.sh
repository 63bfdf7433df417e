#!/usr/bin/env bash
# Install agx into a virtual environment with a llama.cpp build that runs on this machine.
#
# Usage: scripts/install.sh [--venv DIR] [--extras test,train] [--native]
#   --venv DIR     the virtual environment (created if missing; default: .venv)
#   --extras LIST  pip extras of agx to install too (e.g. test)
#   --native       build llama.cpp with -march=native instead (fastest, but dies with SIGILL
#                  where the CPU advertises instructions it cannot execute; see README)
# Environment: AGX_LLAMA_ACCELERATOR=cuda|metal adds a GPU backend (Apple silicon gets Metal anyway).
#
# Why not a plain `pip install -e .`: llama-cpp-python compiles llama.cpp with -march=native,
# which on some VMs enables AMX/AVX-512 that the guest cannot execute. agx/runtime/cpu_build.py
# runs a tiny program per instruction-set level and builds with exactly what executed here.
# The wheel is kept per build flags under ~/.cache/agx/wheels, so a second venv (or CI on
# the same machine) reuses it instead of compiling for ~6 minutes again.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
EXTRAS=""
NATIVE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) VENV=$2; shift 2 ;;
    --extras) EXTRAS=$2; shift 2 ;;
    --native) NATIVE=1; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
VPY="$VENV/bin/python"

REQ=$("$VPY" -c 'import runpy; print(runpy.run_path("agx/runtime/cpu_build.py")["LLAMA_CPP_PYTHON_REQUIREMENT"])')
if [ "$NATIVE" = 1 ]; then
  ARGS="-DGGML_NATIVE=ON"
else
  ARGS=$("$VPY" agx/runtime/cpu_build.py cmake-args)
fi
STAMP="$VENV/agx-llama-build.txt"
WANT="$REQ $ARGS"

if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ] || ! "$VPY" -c 'import llama_cpp' 2>/dev/null; then
  KEY=$(printf '%s|%s|%s' "$WANT" "$("$VPY" -c 'import sys; print(sys.version)')" "$(uname -sm)" | sha256sum | cut -c1-16)
  CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/agx/wheels/$KEY"
  if ! ls "$CACHE"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "agx install: building llama-cpp-python with CMAKE_ARGS=\"$ARGS\" (~6 min on 2 cores)"
    mkdir -p "$CACHE.tmp"
    CMAKE_ARGS="$ARGS" FORCE_CMAKE=1 "$VPY" -m pip wheel -q --no-deps --no-cache-dir -w "$CACHE.tmp" "$REQ"
    rm -rf "$CACHE" && mv "$CACHE.tmp" "$CACHE"
  fi
  "$VPY" -m pip install -q --force-reinstall --no-deps "$CACHE"/llama_cpp_python-*.whl
  echo "$WANT" > "$STAMP"
fi

SPEC="."
[ -n "$EXTRAS" ] && SPEC=".[$EXTRAS]"
"$VPY" -m pip install -q -e "$SPEC"
echo "agx install: done ($VENV; llama.cpp flags: $ARGS)"
