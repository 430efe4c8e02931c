#!/usr/bin/env bash
# The gateway's throughput against the worker's, with each in its own process as in production:
# a zero-delay `sluice-sim`, `sluice serve` in front of it, and wrk as the client. `sluice bench`
# makes the same comparison with its own client and its own binary as worker and gateway; this
# script checks it with an independent client and the binaries operators run.
#
#   docs/bench/processes.sh [SLICES] [SECONDS_PER_SLICE] [CONNECTIONS]    # default 6 2 32
#
# Targets take turns in slices (direct, gateway, direct, ...) so both see the same state of a
# shared VM: first throughput with CONNECTIONS connections, then latency with one connection
# (wrk's p50 and p99 per slice; the median over the slices is printed, and the gateway-added
# latency is the gateway's median less the direct one). Needs wrk (Debian package) and release
# builds of `sluice` and `sluice-sim` in ${CARGO_TARGET_DIR:-target}/release.
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

# One connection: p50 and p99 in µs, one line per slice.
latency() {
  wrk -t1 -c1 -d"${seconds}s" --latency -s "$work/post.lua" "$1" | python3 -c '
import re, sys
unit = {"us": 1, "ms": 1e3, "s": 1e6}
found = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+(?:us|ms|s))\s*$", sys.stdin.read(), re.M))
print(*(round(float(re.match(r"[\d.]+", found[q])[0]) * unit[re.sub(r"[\d.]+", "", found[q])]) for q in ("50", "99")))'
}
latency "$direct_url" >/dev/null
latency "$gateway_url" >/dev/null
for _ in $(seq "$slices"); do
  latency "$direct_url" >>"$work/direct.lat"
  latency "$gateway_url" >>"$work/gateway.lat"
done
printf 'non-streaming, 1 connection, median over %s slices\n' "$slices"
python3 - "$work/direct.lat" "$work/gateway.lat" <<'PY'
import statistics, sys
def medians(path):
    rows = [list(map(int, line.split())) for line in open(path)]
    return [statistics.median(column) for column in zip(*rows)]
direct, gateway = medians(sys.argv[1]), medians(sys.argv[2])
print(f"{'':<16} {'p50 µs':>8} {'p99 µs':>8}")
print(f"{'direct':<16} {direct[0]:>8.0f} {direct[1]:>8.0f}")
print(f"{'gateway':<16} {gateway[0]:>8.0f} {gateway[1]:>8.0f}")
print(f"{'gateway-added':<16} {gateway[0] - direct[0]:>8.0f} {gateway[1] - direct[1]:>8.0f}")
PY
