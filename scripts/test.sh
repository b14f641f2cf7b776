#!/usr/bin/env bash
# Install scalegrid and everything its tests need into .venv, then run the test suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# The report test drives a real headless Chromium (Debian's package); without one it skips.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
  { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
    || echo "scripts/test.sh: could not install chromium; the browser test will be skipped" >&2
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
export PATH="$PWD/.venv/bin:$PATH"  # tests start `scalegrid`, `ray` and `python` as a user's shell would
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=25 "$@"  # the slowest tests printed: the whole suite, install included, has a 15-minute budget on 2 cores
