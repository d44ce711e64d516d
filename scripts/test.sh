#!/usr/bin/env bash
# The whole test suite: installs what it needs, checks style and types, runs every test tier.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then bash scripts/install-test-deps.sh; fi
bash scripts/setup-env.sh
.venv/bin/ruff check src tests bench
.venv/bin/mypy
.venv/bin/pytest -q -p no:cacheprovider "$@"
