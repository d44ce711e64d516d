#!/usr/bin/env bash
# The parser fuzz targets (tests/fuzz) on demand, for longer than the test suite runs them.
#
#   scripts/fuzz.sh                  the "long" profile: 20000 examples per weight-1 target
#   scripts/fuzz.sh 5000             5000 examples per weight-1 target
#   scripts/fuzz.sh 5000 -k mime     extra arguments go to pytest
#
# Failing examples are kept in .hypothesis/fuzz (ignored by git) and replayed first next time.
# The shared corpora are read from ../shared/corpora, or from $EDGEWARD_CORPORA; the virtual
# environment is .venv, or $VENV.
set -euo pipefail
cd "$(dirname "$0")/.."
export EDGEWARD_FUZZ=long PYTHONPATH=src
if [ "${1:-}" != "" ] && [ "${1//[0-9]/}" = "" ]; then
  export EDGEWARD_FUZZ_EXAMPLES="$1"
  shift
fi
exec "${VENV:-.venv}/bin/pytest" -q -p no:cacheprovider tests/fuzz "$@"
