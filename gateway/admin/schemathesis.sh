#!/usr/bin/env bash
# Property-based tests of the admin API against its own OpenAPI document: schemathesis generates
# requests from /admin/api/openapi.json (valid and invalid ones) and checks every answer — no
# 5xx, statuses and bodies as documented, invalid input refused, valid input accepted.
#
# Usage: gateway/admin/schemathesis.sh [extra schemathesis options]
# Env:   SCHEMATHESIS_VENV (default /var/tmp/schemathesis-venv), SCHEMATHESIS_MAX_EXAMPLES (default 30)
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=${SCHEMATHESIS_VENV:-/var/tmp/schemathesis-venv}
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'schemathesis>=4.3,<5'
fi

# Build the example server and find its binary from cargo's own report.
server=$(cargo build --quiet -p sluice-admin --example serve --message-format=json |
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "serve" and m.get("executable"):
        print(m["executable"])')

export SLUICE_ADMIN_TOKEN=schemathesis-admin-token-0123456789abcdef
log=$(mktemp)
"$server" >"$log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -f "$log"' EXIT

url=""
for _ in $(seq 1 300); do
  url=$(head -n 1 "$log")
  [ -n "$url" ] && break
  kill -0 "$pid" || { echo "the admin server exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "the admin server did not start within 30 s" >&2; exit 1; }

SCHEMATHESIS_HOOKS=gateway/admin/schemathesis_hooks.py \
"$venv/bin/schemathesis" --config-file gateway/admin/schemathesis.toml run "$url/admin/api/openapi.json" \
  --header "Authorization: Bearer $SLUICE_ADMIN_TOKEN" \
  --checks all \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-30}" \
  --seed 1 \
  --no-color \
  "$@"
