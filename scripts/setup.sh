#!/usr/bin/env bash
# One-time (idempotent) set-up: checks Java 17 for ScienceWorld, makes .venv, installs LONDI.
# Used by scripts/demo.sh and scripts/test.sh; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "londi setup: $PYTHON not found; install Python 3.10 or newer (e.g. apt-get install python3 python3-venv)" >&2
  exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
  echo "londi setup: Python 3.10 or newer is needed, found $("$PYTHON" --version 2>&1)" >&2
  exit 1
fi

# ScienceWorld runs a Java 17 virtual machine.
java_major=""
if command -v java >/dev/null 2>&1; then
  java_major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1)
fi
if [ -z "$java_major" ] || [ "$java_major" -lt 17 ]; then
  echo "londi setup: Java 17 or newer is needed for ScienceWorld but was not found (java: ${java_major:-missing})." >&2
  echo "  Install it with:  sudo apt-get install -y openjdk-17-jre-headless   (Debian/Ubuntu)" >&2
  echo "  or:               brew install openjdk@17                            (macOS)" >&2
  if [ "${LONDI_SKIP_JAVA_CHECK:-0}" != "1" ]; then
    echo "  (set LONDI_SKIP_JAVA_CHECK=1 to go on without ScienceWorld)" >&2
    exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "londi setup: creating .venv" >&2
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
# The CPU build of torch, pinned in constraints.txt (a plain 'torch' would pull a CUDA build).
if ! .venv/bin/python -c 'import torch' >/dev/null 2>&1; then
  echo "londi setup: installing torch (CPU build)" >&2
  "${PIP[@]}" install -c constraints.txt "torch==2.13.0"
fi
stamp=.venv/.londi-installed
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  echo "londi setup: installing londi and its dependencies" >&2
  "${PIP[@]}" install -c constraints.txt -e '.[test,bench,serve,ray]'
  touch "$stamp"
fi
.venv/bin/python -c 'import londi, londi.envs, londi.agents' >/dev/null
echo "londi setup: ready (.venv)" >&2
