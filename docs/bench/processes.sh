#!/usr/bin/env bash
# The gateway's throughput against the worker's, with each in its own process as in production:
# a zero-delay `sluice-sim`, `sluice serve` in front of it, and wrk as the client. `sluice bench`
# runs client, worker and gateway as tasks of one tokio runtime, so there the gateway also pays
# for sharing a scheduler with the other two; this script shows the same comparison without that.
#
#   docs/bench/processes.sh [SLICES] [SECONDS_PER_SLICE] [CONNECTIONS]    # default 6 2 32
#
# Targets take turns in slices (direct, gateway, direct, ...) so both see the same state of a
# shared VM. Needs wrk (Debian package) and release builds of `sluice` and `sluice-sim` in
# ${CARGO_TARGET_DIR:-target}/release.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="${CARGO_TARGET_DIR:-target}/release"
slices="${1:-6}" seconds="${2:-2}" connections="${3:-32}"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
command -v wrk >/dev/null || { echo "processes.sh: wrk not found (apt-get install wrk)" >&2; exit 2; }

source docs/bench/common.sh
sim=$(port) data=$(port) admin=$(port)
start_sim "$sim"
bench_config "$data" "$admin" "$sim" >"$work/config.toml"
"$bin/sluice" serve --config "$work/config.toml" --data-dir "$work/data" >"$work/gateway.log" 2>&1 &
for _ in $(seq 60); do curl -sf -o /dev/null "http://127.0.0.1:$admin/readyz" && break; sleep 0.5; done
write_post_lua "$work/post.lua"

# Requests completed in one slice against a URL.
run() { wrk -t1 -c"$connections" -d"${seconds}s" -s "$work/post.lua" "$1" | awk '/requests in/ {print $1}'; }
direct_url="http://127.0.0.1:$sim/v1/chat/completions"
gateway_url="http://127.0.0.1:$data/v1/chat/completions"
run "$direct_url" >/dev/null
run "$gateway_url" >/dev/null
direct=0 gateway=0
for _ in $(seq "$slices"); do
  direct=$((direct + $(run "$direct_url")))
  gateway=$((gateway + $(run "$gateway_url")))
done
total=$((slices * seconds))
printf 'non-streaming, %s connections, %s slices of %s s each, separate processes\n' "$connections" "$slices" "$seconds"
printf '%-10s %10s\n' direct "$((direct / total)) req/s" gateway "$((gateway / total)) req/s"
printf '%-10s %10s\n' ratio "$(python3 -c "print(f'{$gateway / $direct:.2f}')")"
