#!/usr/bin/env bash
# API benchmark: the release binary on a fresh PostgreSQL database holding 2,000 simulated calls and
# one 200-turn call; wrk (Debian package) at 64 connections against /healthz, the sessions list and
# the 200-turn timeline, 10 s each. Prints requests/s and p50/p99 latency. Figures only.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/services.sh)"
command -v wrk >/dev/null || { apt-get -o DPkg::Lock::Timeout=600 update -qq && apt-get -o DPkg::Lock::Timeout=600 install -y -qq wrk >/dev/null; }
cargo build -q --release --bin call-insights
BIN="${CARGO_TARGET_DIR:-target}/release/call-insights"
ID=$(date +%s%N | tail -c 10)
DB="benchapi_$ID"
STREAM="benchapi:$ID:sessions"
DATA=$(mktemp -d)
psql "$INSIGHTS_TEST_DATABASE_URL" -qc "CREATE DATABASE \"$DB\"" >/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
KEY="bench-operator-key"
export INSIGHTS_DATABASE_URL="${INSIGHTS_TEST_DATABASE_URL%/*}/$DB" INSIGHTS_STREAM="$STREAM" INSIGHTS_DATA_DIR="$DATA" \
  INSIGHTS_HTTP_ADDR="127.0.0.1:$PORT" INSIGHTS_API_KEYS="$KEY=*" RUST_LOG=warn
"$BIN" > "$DATA/service.log" 2>&1 &
SVC=$!
cleanup() {
  kill "$SVC" 2>/dev/null || true; wait "$SVC" 2>/dev/null || true
  redis-cli -h 127.0.0.1 DEL "$STREAM" >/dev/null || true
  psql "$INSIGHTS_TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done
"$BIN" produce --calls 2000 --partials 0 >/dev/null 2>&1
python3 - <<'PY' | redis-cli -h 127.0.0.1 -x XADD "$STREAM" '*' payload >/dev/null
import json
turns, events, t = [], [], 800
for i in range(200):
    user = i % 2 == 0
    end = t + 1500
    turn = {"index": i, "role": "user" if user else "assistant", "content": f"turn {i} " + "words " * 12, "start_ms": t, "end_ms": end}
    if user:
        turn.update(stt_confidence=0.9, transcription_delay_ms=180.0, end_of_turn_delay_ms=320.0)
        events += [{"seq": len(events), "type": "user_started_speaking", "at_ms": t, "turn_index": i},
                   {"seq": len(events) + 1, "type": "user_stopped_speaking", "at_ms": end, "turn_index": i, "data": {"speech_duration_ms": 1500}},
                   {"seq": len(events) + 2, "type": "user_transcript", "at_ms": end + 180, "turn_index": i, "data": {"final": True, "transcript": "words", "confidence": 0.9}}]
    else:
        turn.update(llm_ttft_ms=300.0, tts_ttfb_ms=250.0, e2e_latency_ms=900.0)
        events += [{"seq": len(events), "type": "agent_started_speaking", "at_ms": t, "turn_index": i},
                   {"seq": len(events) + 1, "type": "agent_stopped_speaking", "at_ms": end, "turn_index": i}]
    turns.append(turn)
    t = end + 600
print(json.dumps({"schema_version": 1, "report_type": "final", "seq": 0, "call_id": "bench-200-turns", "tenant_id": "acme",
                  "started_at": "2026-11-01T09:00:00Z", "turns": turns, "events": events}), end="")
PY
for _ in $(seq 1 300); do
  curl -fs "http://127.0.0.1:$PORT/metrics" | grep -q '^call_insights_ingest_entries_stored_total 2001$' && break
  sleep 0.2
done
SID=$(curl -fs -H "Authorization: Bearer $KEY" "http://127.0.0.1:$PORT/api/v1/sessions/by-call/bench-200-turns" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
ITEMS=$(curl -fs -H "Authorization: Bearer $KEY" "http://127.0.0.1:$PORT/api/v1/sessions/$SID/timeline" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))')
echo "database: PostgreSQL, 2,001 sessions; timeline of the 200-turn session: $ITEMS items"
run() {
  local name=$1 url=$2 extra=${3:-}
  local out
  if [ -n "$extra" ]; then
    out=$(wrk -t2 -c64 -d"${DURATION:-10s}" --latency -H "Authorization: Bearer $KEY" -H "$extra" "$url")
  else
    out=$(wrk -t2 -c64 -d"${DURATION:-10s}" --latency -H "Authorization: Bearer $KEY" "$url")
  fi
  local rps p50 p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  printf '%-42s %10s req/s   p50 %8s   p99 %8s\n' "$name" "$rps" "$p50" "$p99"
}
run "/healthz" "http://127.0.0.1:$PORT/healthz"
run "/api/v1/sessions?limit=50" "http://127.0.0.1:$PORT/api/v1/sessions?limit=50"
run "/api/v1/sessions/{id}/timeline" "http://127.0.0.1:$PORT/api/v1/sessions/$SID/timeline"
run "/api/v1/sessions?limit=50 (gzip)" "http://127.0.0.1:$PORT/api/v1/sessions?limit=50" "Accept-Encoding: gzip"
run "/api/v1/sessions/{id}/timeline (gzip)" "http://127.0.0.1:$PORT/api/v1/sessions/$SID/timeline" "Accept-Encoding: gzip"
