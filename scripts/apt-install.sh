#!/usr/bin/env bash
# Installs Debian packages, waiting (up to 10 minutes) while another apt holds its locks — the
# service and browser set-up scripts may run side by side on a fresh machine — and failing loudly.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
echo "apt-install: $*" >&2
for attempt in $(seq 1 60); do
  if apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 \
    && apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$@" >&2; then
    exit 0
  fi
  echo "apt-install: apt busy or failing (attempt $attempt); retrying in 10 s" >&2
  sleep 10
done
echo "apt-install: cannot install $*" >&2
exit 1
