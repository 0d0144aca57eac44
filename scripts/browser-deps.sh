#!/usr/bin/env bash
# Installs what the browser tests need, once per machine: Debian's chromium (never a browser
# download) and playwright-core from npm into tests/browser/node_modules (from package-lock.json).
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "browser-deps: $*" >&2; }
if [ ! -x /usr/bin/chromium ]; then
  log "installing chromium (apt)"
  scripts/apt-install.sh chromium
fi
if ! command -v node >/dev/null 2>&1; then
  log "installing nodejs and npm (apt)"
  scripts/apt-install.sh nodejs npm
fi
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  log "installing playwright-core (npm ci)"
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
