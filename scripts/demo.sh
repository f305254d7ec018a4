#!/usr/bin/env bash
# Set up (if needed) and run the main job: `londi demo` on its embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/londi demo "$@"
