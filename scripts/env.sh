# Sourced by the other scripts: makes sure .venv exists with the project installed.
# Usage: source scripts/env.sh [extra]   (extra: "dev" installs the test and lint tools and the
# benchmark peers too: the tests run the benchmark suite on a few rounds)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else 1)'; then
  echo "error: $PYTHON is not Python 3.11 or 3.12; set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
VENV="${CAMPOPT_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
target="."
if [ "${1:-}" = "dev" ]; then target=".[dev,bench]"; fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$target"
export PATH="$PWD/$VENV/bin:$PATH"
