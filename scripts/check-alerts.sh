#!/usr/bin/env bash
# Checks the Prometheus alert rules (syntax, and unit tests that each alert fires when it should) and
# that the Grafana dashboard is valid JSON. Installs Debian's `prometheus` for promtool when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v promtool >/dev/null 2>&1; then
  echo "check-alerts: installing prometheus (apt) for promtool" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 && apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends prometheus >&2
  # The package may start a server; this script only needs the tool.
  pkill -x prometheus 2>/dev/null || true
fi
promtool check rules docker/prometheus/alerts.yml
(cd docker/prometheus && promtool test rules alerts_test.yml)
python3 -c 'import json,sys; d=json.load(open("docker/grafana/dashboards/call-insights.json")); print("grafana dashboard:", len(d["panels"]), "panels")'
