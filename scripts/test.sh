#!/usr/bin/env bash
# The test command: starts PostgreSQL, Redis and Garage when they are not running (installing them on a
# fresh machine), installs chromium and playwright-core for the browser tests, then runs every test of
# the workspace with cargo-nextest (extra arguments go to nextest), then the Python producers' lint,
# type checks and tests (scripts/producers.sh).
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
# Then the Python producers (producers/python): their end-to-end tests drive the service binary. They
# run after the Rust suite, not beside it: the fault tests' timing windows want the cores to themselves.
status=0
cargo nextest run --workspace --no-fail-fast "$@" || status=$?
cargo build --bin call-insights
export CALL_INSIGHTS_BIN="${CARGO_TARGET_DIR:-target}/debug/call-insights"
echo "== Python producers (scripts/producers.sh)"
producers=0
scripts/producers.sh || producers=$?
if [ "$producers" -ne 0 ]; then echo "the Python producers' checks failed (exit $producers)" >&2; fi
if [ "$status" -ne 0 ]; then exit "$status"; fi
exit "$producers"
