#!/usr/bin/env bash
# A well-behaved tenant's throughput and latency alone and beside a tenant whose plugin loops
# (issue 18's fairness figure). One simulated worker with its default (H100-like) timing, the
# gateway with two tenants: `good` with no plugin of its own, `evil` with the test guest bound to
# it alone in mode MODE (default `loop`: every call runs to its 10 ms deadline; also `grow`,
# `trap`, `stack`, `huge-header`, `hammer`: see plugins/test-guest). Three gateways run side by
# side: one with the defaults (circuit breaker, concurrent calls capped), one with the breaker
# off (the cap measured on its own), and one with neither (breaker off, 64 concurrent calls), as
# plugins ran before either existed.
#
#   docs/bench/sandbox.sh [SLICES] [SECONDS_PER_SLICE] [EVIL_CONNECTIONS] [MODE]  # default 4 4 8 loop
#
# Phases take turns in slices (alone, beside evil on each gateway, ...) so each sees the same
# state of a shared VM. `good` runs wrk with 4 connections (latency-bound, as a tenant's app
# is); `evil` runs EVIL_CONNECTIONS connections as fast as it is answered. Prints good's req/s,
# p50 and p99 (median over slices), evil's req/s, and how long the breaker took to open. Needs
# wrk (Debian package), release builds of `sluice` and `sluice-sim` in
# ${CARGO_TARGET_DIR:-target}/release, and the test guest component, which the plugin host's
# build script leaves in its OUT_DIR (any `cargo test -p sluice-plugin-host` builds it).
set -euo pipefail
cd "$(dirname "$0")/../.."
target="${CARGO_TARGET_DIR:-target}"
bin="$target/release"
slices="${1:-4}" seconds="${2:-4}" evil_connections="${3:-8}" mode="${4:-loop}"
command -v wrk >/dev/null || { echo "sandbox.sh: wrk not found (apt-get install wrk)" >&2; exit 2; }
guest=$(find "$target" -path '*sluice-plugin-host-*/out/test_guest.wasm' -print -quit 2>/dev/null)
[ -n "$guest" ] || { echo "sandbox.sh: no test_guest.wasm under $target (run: cargo test -p sluice-plugin-host --no-run)" >&2; exit 2; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT

source docs/bench/common.sh
sim=$(port)
"$bin/sluice-sim" --listen "127.0.0.1:$sim" --model bench-model --output-tokens 16 >/dev/null 2>&1 &

# $1 data port, $2 admin port, $3 breaker failures (0: off), $4 extra lines for the binding.
config() {
  printf '[server]\nlisten = "127.0.0.1:%s"\nadmin_listen = "127.0.0.1:%s"\n' "$1" "$2"
  printf '[[pools]]\nname = "bench"\nmodels = ["bench-model"]\nendpoints = ["http://127.0.0.1:%s"]\n' "$sim"
  printf '[[tenants]]\nname = "good"\napi_keys = ["sk-good-0123456789"]\n'
  printf '[[tenants]]\nname = "evil"\napi_keys = ["sk-evil-0123456789"]\n'
  printf '[[plugins]]\nname = "evil-guest"\nsource = "%s"\nscope = { tenant = "evil" }\n' "$guest"
  printf 'capabilities = ["log", "clock", "counters", "cache", "config", "metrics", "embeddings", "http"]\n%s\n' "$4"
  printf '[plugins.breaker]\nfailures = %s\n[plugins.config]\nmode = "%s"\n' "$3" "$mode"
}

declare -A data admin
gateways="breaker cap none"
for gw in $gateways; do
  data[$gw]=$(port) admin[$gw]=$(port)
  failures=5 extra=""
  [ "$gw" = breaker ] || failures=0
  [ "$gw" = none ] && extra="max_concurrent_calls = 64"
  config "${data[$gw]}" "${admin[$gw]}" "$failures" "$extra" >"$work/$gw.toml"
  "$bin/sluice" serve --config "$work/$gw.toml" --data-dir "$work/data-$gw" >"$work/$gw.log" 2>&1 &
done
for gw in $gateways; do
  for _ in $(seq 120); do curl -sf -o /dev/null "http://127.0.0.1:${admin[$gw]}/readyz" && break; sleep 0.5; done
  curl -sf -o /dev/null "http://127.0.0.1:${admin[$gw]}/readyz" || { cat "$work/$gw.log" >&2; exit 1; }
done

for tenant in good evil; do
  cat >"$work/$tenant.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"model":"bench-model","messages":[{"role":"user","content":"Say something short about rivers."}],"max_tokens":16}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-$tenant-0123456789"
LUA
done

# good's "req/s p50_us p99_us" for one slice against gateway $1.
good() {
  wrk -t1 -c4 -d"${seconds}s" --latency -s "$work/good.lua" "http://127.0.0.1:${data[$1]}/v1/chat/completions" |
    python3 -c '
import re, sys
text = sys.stdin.read()
unit = {"us": 1, "ms": 1e3, "s": 1e6}
def us(v):
    n, u = re.match(r"([\d.]+)(\w+)", v).groups()
    return round(float(n) * unit[u])
q = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", text, re.M))
rate = re.search(r"Requests/sec:\s+([\d.]+)", text)[1]
print(rate, us(q["50"]), us(q["99"]))'
}

# evil's req/s over one slice against gateway $1, in the background (its pid in $evil_pid);
# prints to $2.
evil() {
  wrk -t"$evil_connections" -c"$evil_connections" -d"${seconds}s" -s "$work/evil.lua" \
    "http://127.0.0.1:${data[$1]}/v1/chat/completions" | awk '/Requests\/sec/ {print $2}' >"$2" &
  evil_pid=$!
}

# Breaker trip time: evil starts, /metrics is polled until the binding's breaker is open.
started=$(date +%s%N)
evil breaker "$work/warm.evil"
tripped=""
for _ in $(seq 400); do
  if curl -sf "http://127.0.0.1:${admin[breaker]}/metrics" | grep -q '^sluice_plugin_breaker_state{.*plugin="evil-guest".*} 2$'; then
    tripped=$(( ($(date +%s%N) - started) / 1000000 ))
    break
  fi
  sleep 0.01
done
wait "$evil_pid"
for gw in $gateways; do good "$gw" >/dev/null; done

for i in $(seq "$slices"); do
  good breaker >>"$work/alone"
  for gw in $gateways; do
    evil "$gw" "$work/evil.$gw.$i"
    good "$gw" >>"$work/beside.$gw"
    wait "$evil_pid"
  done
done
for gw in $gateways; do cat "$work"/evil."$gw".* >"$work/evil.$gw"; done

printf 'good: 4 connections; evil: %s connections, its plugin in mode %s; %s slices of %s s\n' \
  "$evil_connections" "$mode" "$slices" "$seconds"
python3 - "$work" <<'PY'
import statistics, sys
work = sys.argv[1]
def rows(name):
    return [list(map(float, line.split())) for line in open(f"{work}/{name}") if line.strip()]
def med(name):
    return [statistics.median(c) for c in zip(*rows(name))]
alone = med("alone")
w = 36
print(f"{'':<{w}} {'good req/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'vs alone':>9} {'p99 x':>6} {'evil req/s':>10}")
print(f"{'alone':<{w}} {alone[0]:>10.1f} {alone[1]/1e3:>7.1f} {alone[2]/1e3:>7.1f}")
for label, name in (
    ("beside evil, defaults", "breaker"),
    ("beside evil, breaker off (cap only)", "cap"),
    ("beside evil, no breaker, no cap", "none"),
):
    b = med(f"beside.{name}")
    e = statistics.median(r[0] for r in rows(f"evil.{name}"))
    print(f"{label:<{w}} {b[0]:>10.1f} {b[1]/1e3:>7.1f} {b[2]/1e3:>7.1f} {b[0]/alone[0]:>8.0%} {b[2]/alone[2]:>6.2f} {e:>10.0f}")
PY
echo "breaker opened ${tripped:-(not seen within 4 s)} ms after evil's first requests"
