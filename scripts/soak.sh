#!/usr/bin/env bash
# Soak: the release binary on a fresh PostgreSQL database, fed at half its maximum ingest rate for
# SOAK_SECONDS (default 600) while API readers and SSE clients run (the maximum is measured with them
# running); every 10 s it samples the
# service's RSS, the readers' p99 latency, the consumer group's lag and pending, and the process's
# open file descriptors (sockets included), and prints them as a table. Flat lines are the pass.
#
#   scripts/soak.sh                 # 10 minutes
#   SOAK_SECONDS=120 SOAK_SSE=20 scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/services.sh)"
SECONDS_TOTAL=${SOAK_SECONDS:-600}
SSE_CLIENTS=${SOAK_SSE:-10}
READERS=${SOAK_READERS:-4}
cargo build -q --release --bin call-insights
BIN="${CARGO_TARGET_DIR:-target}/release/call-insights"

ID=$(date +%s%N | tail -c 10)
DB="soak_$ID"
STREAM="soak:$ID:sessions"
DATA=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# A PostgreSQL of the soak's own with the stock settings a production server runs (autovacuum on):
# the test server may be tuned otherwise (this machine's runs with autovacuum off, and a database
# that is never vacuumed nor analysed grows slower with every update, which is not what a soak of
# the service should measure). SOAK_SHARED_PG=1 uses the test server instead.
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
PRIVATE_PG=""
if [ -z "${SOAK_SHARED_PG:-}" ] && [ -x "$PGBIN/initdb" ]; then
  PRIVATE_PG="$DATA/pg"
  chmod 755 "$DATA"
  mkdir -p "$PRIVATE_PG"
  as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$PRIVATE_PG"
  as_pg "$PGBIN/initdb" -D "$PRIVATE_PG/data" -U postgres --auth=trust -E UTF8 >/dev/null
  PGPORT=$(free_port)
  as_pg "$PGBIN/pg_ctl" -D "$PRIVATE_PG/data" -o "-p $PGPORT -c listen_addresses=127.0.0.1 -k $PRIVATE_PG" \
    -l "$PRIVATE_PG/pg.log" -w start >/dev/null
  ADMIN_URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"
else
  ADMIN_URL="$INSIGHTS_TEST_DATABASE_URL"
fi
psql "$ADMIN_URL" -qc "CREATE DATABASE \"$DB\"" >/dev/null
echo "soak: PostgreSQL $( [ -n "$PRIVATE_PG" ] && echo "of its own (stock settings)" || echo "shared test server"), autovacuum $(psql "$ADMIN_URL" -Atc 'SHOW autovacuum')" >&2
PORT=$(free_port)
export INSIGHTS_DATABASE_URL="${ADMIN_URL%/*}/$DB" INSIGHTS_STREAM="$STREAM" \
  INSIGHTS_DATA_DIR="$DATA" INSIGHTS_HTTP_ADDR="127.0.0.1:$PORT" INSIGHTS_LOG_FORMAT=json RUST_LOG=warn
"$BIN" > "$DATA/service.log" 2>&1 &
SVC=$!
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  kill "$SVC" 2>/dev/null || true
  wait 2>/dev/null || true
  redis-cli -h 127.0.0.1 DEL "$STREAM" "$STREAM:events" "$STREAM:dlq" >/dev/null || true
  psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null || true
  if [ -n "$PRIVATE_PG" ]; then as_pg "$PGBIN/pg_ctl" -D "$PRIVATE_PG/data" -m fast -w stop >/dev/null || true; fi
  rm -rf "$DATA"
}
trap cleanup EXIT
BASE="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do curl -fs "$BASE/healthz" >/dev/null && break; sleep 0.2; done

metric() { curl -fs "$BASE/metrics" | awk -v m="$1" '$1 == m {print $2; exit}'; }

# API readers timing their requests and SSE clients reading everything, from the start: the
# maximum is measured under the same load the soak then runs with.
for r in $(seq 1 "$READERS"); do
  (
    while true; do
      for path in "/api/v1/sessions?limit=50" "/" "/api/v1/monitor/active-calls"; do
        curl -s -o /dev/null -w "%{time_total}\n" "$BASE$path" >> "$DATA/latency.$r"
      done
    done
  ) &
  PIDS+=($!)
done
for c in $(seq 1 "$SSE_CLIENTS"); do
  curl -sN "$BASE/api/v1/monitor/stream" > /dev/null &
  PIDS+=($!)
done


# 1. The maximum rate: 4,000 calls × 3 reports published at once, drained.
echo "soak: measuring the maximum ingest rate (with the readers and SSE clients running)" >&2
"$BIN" produce --calls 4000 --partials 2 --concurrency 200 --call-prefix max >/dev/null 2>&1
t0=$(date +%s.%N)
until [ "$(metric call_insights_ingest_entries_stored_total)" = "12000" ]; do sleep 0.2; done
MAX=$(python3 -c "import time; print(int(12000 / (time.time() - $t0)))")
RATE=$(python3 -c "print(int($MAX * ${SOAK_FRACTION:-0.5}))")
echo "soak: maximum $MAX entries/s; feeding $RATE entries/s for $SECONDS_TOTAL s with $READERS API readers and $SSE_CLIENTS SSE clients" >&2

# 2. A producer at SOAK_FRACTION (0.5) of that rate: one `produce` of RATE/3 calls (3 reports each)
# per second.
(
  i=0
  while true; do
    start=$(date +%s.%N)
    "$BIN" produce --calls $(( RATE / 3 > 0 ? RATE / 3 : 1 )) --partials 2 --seed "$i" --call-prefix "soak$i" >/dev/null 2>&1
    i=$(( i + 1 ))
    python3 -c "import time; d = 1 - (time.time() - $start); time.sleep(d) if d > 0 else None"
  done
) &
PIDS+=($!)
printf '%6s %9s %9s %9s %9s %8s %7s %11s\n' "t (s)" "RSS MiB" "p99 ms" "req/10s" "lag" "pending" "fds" "stored"
elapsed=0
while [ "$elapsed" -lt "$SECONDS_TOTAL" ]; do
  sleep 10
  elapsed=$(( elapsed + 10 ))
  rss=$(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$SVC/status")
  fds=$(ls "/proc/$SVC/fd" | wc -l)
  cat "$DATA"/latency.* 2>/dev/null > "$DATA/window" || true
  : > /dev/null
  for f in "$DATA"/latency.*; do : > "$f"; done
  read -r p99 n < <(python3 -c "
import sys
v = sorted(float(x) * 1000 for x in open('$DATA/window') if x.strip())
print(f'{v[max(0, int(len(v) * 0.99) - 1)]:.1f}' if v else 'nan', len(v))")
  printf '%6d %9s %9s %9s %9s %8s %7s %11s\n' "$elapsed" "$rss" "$p99" "$n" \
    "$(metric 'call_insights_consumer_lag{partition="0"}')" "$(metric 'call_insights_consumer_pending{partition="0"}')" "$fds" \
    "$(metric call_insights_ingest_entries_stored_total)"
done
