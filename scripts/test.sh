#!/usr/bin/env bash
# The test command: starts PostgreSQL, Redis and Garage when they are not running (installing them on a
# fresh machine), installs chromium and playwright-core for the browser tests, then runs every test of
# the workspace with cargo-nextest (extra arguments go to nextest) and, beside it, the Python producers'
# lint, type checks and tests (scripts/producers.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/services.sh)"
scripts/browser-deps.sh
# Databases left behind by interrupted earlier runs.
psql "$INSIGHTS_TEST_DATABASE_URL" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'ci\_%'" \
  | while read -r db; do psql "$INSIGHTS_TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null || true; done
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "cargo-nextest missing: installing it" >&2
  cargo install cargo-nextest --locked
fi
# The Python producers (producers/python) run beside the Rust suite: their end-to-end tests drive the
# service binary, built first; they mostly wait on real time, so they share the cores well.
cargo build --bin call-insights
export CALL_INSIGHTS_BIN="${CARGO_TARGET_DIR:-target}/debug/call-insights"
PRODUCERS_LOG=$(mktemp)
scripts/producers.sh >"$PRODUCERS_LOG" 2>&1 &
PRODUCERS_PID=$!
status=0
cargo nextest run --workspace --no-fail-fast "$@" || status=$?
producers=0
wait "$PRODUCERS_PID" || producers=$?
echo "== Python producers (scripts/producers.sh)"
cat "$PRODUCERS_LOG"
rm -f "$PRODUCERS_LOG"
if [ "$producers" -ne 0 ]; then echo "the Python producers' checks failed (exit $producers)" >&2; fi
if [ "$status" -ne 0 ]; then exit "$status"; fi
exit "$producers"
