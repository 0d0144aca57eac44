#!/usr/bin/env bash
# The test command: starts PostgreSQL, Redis and Garage when they are not running (installing them on a
# fresh machine), installs chromium and playwright-core for the browser tests, then runs every test of
# the workspace with cargo-nextest. Extra arguments go to nextest.
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
exec cargo nextest run --workspace --no-fail-fast "$@"
