#!/usr/bin/env bash
# Layers point down (see src/lib.rs): fails when a module below the delivery layer imports from it.
# Delivery is src/api/, src/ui/, src/main.rs; src/app.rs is the composition root above the domain.
# Test modules (`#[cfg(test)]` onwards, and files named tests.rs) are not checked.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
while IFS= read -r file; do
  case "$file" in
    src/api/*|src/ui/*|src/main.rs|src/app.rs|*/tests.rs) continue ;;
  esac
  # Only the code before the file's test module.
  hits=$(awk '/^#\[cfg\(test\)\]/ { exit } { print FILENAME ":" FNR ": " $0 }' "$file" \
    | grep -E 'crate::(api|ui|app)\b|call_insights::(api|ui|app)\b|\baxum::' \
    || true)
  if [ -n "$hits" ]; then
    echo "$hits"
    status=1
  fi
done < <(find src -name '*.rs' | sort)
if [ "$status" -ne 0 ]; then
  echo "layers: the lines above import the delivery layer (api, ui, app) or axum from below it" >&2
  exit 1
fi
echo "layers: the domain imports nothing from the delivery layer"
