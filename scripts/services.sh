#!/usr/bin/env bash
# Starts what the tests and benchmarks need, installing it when missing: PostgreSQL, Redis and Garage
# (an S3-compatible store). Idempotent: running it again with everything up does nothing but check.
# Prints the environment the tests read (INSIGHTS_TEST_*) as `export` lines; `eval "$(scripts/services.sh)"`.
set -euo pipefail

TOOLS=${CALL_INSIGHTS_TOOLS:-/opt/call-insights-tools}
GARAGE_BIN=${GARAGE_BIN:-$TOOLS/garage/bin/garage}
GARAGE_DIR=${GARAGE_DIR:-$TOOLS/garage-node}
GARAGE_VERSION=2.5.0
S3_PORT=${GARAGE_S3_PORT:-3900}
# Fixed test credentials (Garage key ids are GK + 24 hex; secrets 64 hex). Test-only, loopback-only.
S3_KEY_ID=GK0123456789abcdef01234567
S3_SECRET=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
S3_BUCKET=call-insights-test
ARCHIVE_BUCKET=call-insights-archive-test
S3_REGION=garage

log() { echo "services: $*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }
apt_install() {
  log "installing $* (apt)"
  "$(dirname "$0")/apt-install.sh" "$@"
}

# --- Audio tools for the recording tests: espeak-ng (synthesised calls), sox with MP3 and opusenc ---
if ! have espeak-ng || ! have opusenc || ! have sox || ! sox -h 2>/dev/null | grep -q "AUDIO FILE FORMATS:.* mp3"; then
  apt_install espeak-ng sox libsox-fmt-mp3 opus-tools
fi

# --- PostgreSQL -------------------------------------------------------------------------------------
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then apt_install postgresql; fi
  log "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start >&2 || true
  for _ in $(seq 1 60); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.5; done
fi
PG_USER=${PGUSER:-$(id -un)}
if ! psql -h 127.0.0.1 -U "$PG_USER" -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
  # A fresh Debian cluster only knows `postgres`: give the current user a superuser role.
  su postgres -c "psql -qc \"CREATE ROLE \\\"$PG_USER\\\" SUPERUSER LOGIN\"" >&2 2>/dev/null || true
  su postgres -c "createdb -O \"$PG_USER\" test" >&2 2>/dev/null || true
fi
psql -h 127.0.0.1 -U "$PG_USER" -d postgres -Atqc 'select 1' >/dev/null \
  || { log "PostgreSQL at 127.0.0.1:5432 does not accept user $PG_USER (trust auth expected)"; exit 1; }

# --- Redis ------------------------------------------------------------------------------------------
if ! (have redis-cli && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1); then
  have redis-server || apt_install redis-server
  log "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >&2
  for _ in $(seq 1 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.2; done
fi

# --- Redis Cluster (3 masters, no replicas) for the cluster tests and the scale-out benchmark ---------
# Each node's config lives in $CLUSTER_DIR/<port>/redis.conf: a test that kills a master starts it
# again with `redis-server <that file>` (AOF and nodes.conf bring back its data and its slots).
CLUSTER_DIR=${REDIS_CLUSTER_DIR:-$TOOLS/redis-cluster}
CLUSTER_PORTS=(7000 7001 7002)
for port in "${CLUSTER_PORTS[@]}"; do
  mkdir -p "$CLUSTER_DIR/$port"
  cat > "$CLUSTER_DIR/$port/redis.conf" <<CONF
port $port
bind 127.0.0.1
daemonize yes
dir $CLUSTER_DIR/$port
pidfile $CLUSTER_DIR/$port/redis.pid
logfile $CLUSTER_DIR/$port/redis.log
cluster-enabled yes
cluster-config-file nodes.conf
cluster-node-timeout 2000
cluster-require-full-coverage no
appendonly yes
appendfsync always
save ""
CONF
  if ! redis-cli -p "$port" ping >/dev/null 2>&1; then
    redis-server "$CLUSTER_DIR/$port/redis.conf" >&2
  fi
done
for port in "${CLUSTER_PORTS[@]}"; do
  for _ in $(seq 1 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
done
if ! redis-cli -p 7000 cluster info 2>/dev/null | grep -q "cluster_state:ok"; then
  if [ "$(redis-cli -p 7000 cluster info | sed -n 's/^cluster_known_nodes:\([0-9]*\).*/\1/p')" = "1" ]; then
    log "creating the Redis Cluster on ports ${CLUSTER_PORTS[*]}"
    redis-cli --cluster create $(printf '127.0.0.1:%s ' "${CLUSTER_PORTS[@]}") --cluster-replicas 0 --cluster-yes >&2
  fi
  for _ in $(seq 1 100); do redis-cli -p 7000 cluster info | grep -q "cluster_state:ok" && break; sleep 0.1; done
  redis-cli -p 7000 cluster info | grep -q "cluster_state:ok" \
    || { log "the Redis Cluster on ports ${CLUSTER_PORTS[*]} is not ok"; redis-cli -p 7000 cluster nodes >&2; exit 1; }
fi

# --- Garage (S3) ------------------------------------------------------------------------------------
if [ ! -x "$GARAGE_BIN" ]; then
  log "installing Garage $GARAGE_VERSION with cargo (about 8 minutes on 2 cores, once per machine)"
  cargo install garage --version "$GARAGE_VERSION" --locked --root "$TOOLS/garage" >&2
fi
mkdir -p "$GARAGE_DIR"
CONF="$GARAGE_DIR/garage.toml"
if [ ! -f "$CONF" ]; then
  cat > "$CONF" <<TOML
metadata_dir = "$GARAGE_DIR/meta"
data_dir = "$GARAGE_DIR/data"
db_engine = "sqlite"
replication_factor = 1
# Audio (PCM WAV) hardly compresses, and this store shares the machine's cores with the service
# under test: zstd on every block (Garage's default, level 1) cost it a third of its CPU.
compression_level = "none"
rpc_bind_addr = "127.0.0.1:3901"
rpc_public_addr = "127.0.0.1:3901"
rpc_secret = "$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"

[s3_api]
s3_region = "$S3_REGION"
api_bind_addr = "127.0.0.1:$S3_PORT"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:3903"
admin_token = "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
TOML
  chmod 600 "$CONF"
fi
G() { "$GARAGE_BIN" -c "$CONF" "$@"; }
if ! G status >/dev/null 2>&1; then
  log "starting Garage"
  nohup "$GARAGE_BIN" -c "$CONF" server >"$GARAGE_DIR/garage.log" 2>&1 &
  for _ in $(seq 1 100); do G status >/dev/null 2>&1 && break; sleep 0.2; done
  G status >/dev/null 2>&1 || { log "Garage did not start; see $GARAGE_DIR/garage.log"; tail -20 "$GARAGE_DIR/garage.log" >&2; exit 1; }
fi
if G status 2>/dev/null | grep -q "NO ROLE ASSIGNED"; then
  NODE=$(G node id -q | cut -d@ -f1)
  G layout assign -z dc1 -c 10G "$NODE" >&2
  G layout apply --version "$(( $(G layout show 2>/dev/null | sed -n 's/.*Current cluster layout version: \([0-9]*\).*/\1/p' | head -n1) + 1 ))" >&2
fi
G key info "$S3_KEY_ID" >/dev/null 2>&1 || G key import --yes "$S3_KEY_ID" "$S3_SECRET" -n call-insights-test >&2
for b in "$S3_BUCKET" "$ARCHIVE_BUCKET"; do
  G bucket info "$b" >/dev/null 2>&1 || G bucket create "$b" >&2
  G bucket allow --read --write --owner "$b" --key "$S3_KEY_ID" >/dev/null 2>&1
done
for _ in $(seq 1 50); do curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/" && break; sleep 0.2; done

cat <<ENV
export INSIGHTS_TEST_DATABASE_URL=postgres://$PG_USER@127.0.0.1:5432/postgres
export INSIGHTS_TEST_REDIS_URL=redis://127.0.0.1:6379
export INSIGHTS_TEST_REDIS_CLUSTER_URLS=$(printf 'redis://127.0.0.1:%s,' "${CLUSTER_PORTS[@]}" | sed 's/,$//')
export INSIGHTS_TEST_REDIS_CLUSTER_DIR=$CLUSTER_DIR
export INSIGHTS_TEST_S3_ENDPOINT_URL=http://127.0.0.1:$S3_PORT
export INSIGHTS_TEST_S3_BUCKET=$S3_BUCKET
export INSIGHTS_TEST_S3_ARCHIVE_BUCKET=$ARCHIVE_BUCKET
export INSIGHTS_TEST_S3_REGION=$S3_REGION
export INSIGHTS_TEST_S3_ACCESS_KEY=$S3_KEY_ID
export INSIGHTS_TEST_S3_SECRET_KEY=$S3_SECRET
ENV
log "PostgreSQL, Redis, the Redis Cluster and Garage are up"
