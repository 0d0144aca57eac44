#!/usr/bin/env bash
# The Python producers' checks and tests (producers/python): one venv per framework outside the clone
# (created from the pinned requirements, rebuilt only when they change), the package installed into
# it as a user would, then ruff, mypy --strict and pytest (mapping, publisher, the framework's offline
# scenarios and the end-to-end run through the service binary, which must be built already).
# Needs Redis (INSIGHTS_TEST_REDIS_URL). Usage: scripts/producers.sh [livekit|pipecat]...
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=${CALL_INSIGHTS_TOOLS:-/opt/call-insights-tools}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
PKG=producers/python
log() { echo "producers: $*" >&2; }

venv_for() {
  local fw=$1 req="$PKG/requirements-$1.txt" dir="$TOOLS/venvs/$1"
  local stamp; stamp=$(sha256sum "$req" | cut -c1-16)
  if [ ! -x "$dir/bin/python" ] || [ "$(cat "$dir/.stamp" 2>/dev/null)" != "$stamp" ]; then
    log "creating the $fw venv in $dir (pinned: $req)"
    rm -rf "$dir"
    "$PY" -m venv "$dir"
    "$dir/bin/pip" install -q --disable-pip-version-check -r "$req" >&2
    echo "$stamp" > "$dir/.stamp"
  fi
  # The package as a user installs it (not editable: the wheel's contents, py.typed included).
  "$dir/bin/pip" install -q --disable-pip-version-check --no-deps --force-reinstall "./$PKG" >&2
  echo "$dir"
}

run() {
  local fw=$1 dir; dir=$(venv_for "$fw")
  local other=pipecat; [ "$fw" = pipecat ] && other=livekit
  log "$fw: ruff"
  "$dir/bin/ruff" check --no-cache "$PKG" && "$dir/bin/ruff" format --no-cache --check "$PKG" >/dev/null
  log "$fw: mypy --strict"
  (cd "$PKG" && "$dir/bin/mypy" --strict --no-incremental --cache-dir=/dev/null \
    $(ls src/call_insights/*.py | grep -v "$other"))
  log "$fw: pytest"
  local tests="tests/test_mapping.py tests/test_publisher.py tests/test_$fw.py"
  [ "$fw" = pipecat ] && tests="tests/test_$fw.py"  # the framework-free suites run once, with LiveKit
  (cd "$PKG" && "$dir/bin/python" -m pytest -q -p no:cacheprovider $tests)
}

FWS=("$@"); [ ${#FWS[@]} -eq 0 ] && FWS=(livekit pipecat)
for fw in "${FWS[@]}"; do run "$fw"; done
log "all passed"
