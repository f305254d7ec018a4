#!/usr/bin/env bash
# The import-linter contract of pyproject.toml ([tool.importlinter], the layers of docs/design.md).
# londi.envs and londi.agents live in envs/ and agents/ (setuptools package_dir); grimp reads a
# package from one folder, so the installed layout is put together in a scratch folder first.
set -euo pipefail
cd "$(dirname "$0")/.."
lint=$(realpath "${LINT_IMPORTS:-.venv/bin/lint-imports}")
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
copy() { (cd "$1" && find . -name '*.py' -not -path '*/__pycache__/*' -print0 | xargs -0 cp --parents -t "$2"); }
mkdir -p "$tree/londi/envs" "$tree/londi/agents"
copy londi "$tree/londi"
copy envs "$tree/londi/envs"
copy agents "$tree/londi/agents"
cp pyproject.toml "$tree/"
cd "$tree"
PYTHONPATH="$tree" "$lint" pyproject.toml
