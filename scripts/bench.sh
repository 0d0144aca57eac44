#!/usr/bin/env bash
# Runs the ingest benchmarks against the services scripts/services.sh starts. Arguments go to the bench,
# e.g. `scripts/bench.sh --audio --calls 200`. Prints figures; never fails on them.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/services.sh)"
exec cargo bench --bench ingest -- "$@"
