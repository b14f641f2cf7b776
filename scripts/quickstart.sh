#!/usr/bin/env bash
# Install scalegrid into .venv (pinned set from constraints.txt) and run the quickstart sweep
# on an embedded local Ray. Extra arguments go to `scalegrid run`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[eval]"
exec .venv/bin/scalegrid run sweeps/quickstart.yaml "$@"
