#!/usr/bin/env bash
# Install scalegrid and everything its tests need into .venv, then run the test suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
