#!/usr/bin/env bash
# The gateway's memory under a flood of large request bodies (issue 22, finding 7): one tenant
# sends CONCURRENCY chat requests at once, each a body of about BODY_MIB MiB made of many short
# messages (the shape that costs the parser most), ROUNDS times; a simulated worker answers
# each. The gateway's resident set is sampled every 50 ms from /proc.
#
#   docs/bench/memory.sh [BODY_MIB] [CONCURRENCY] [ROUNDS] [PROFILE]   # default 15 24 3 release
#
# Prints RSS at rest, the peak, the peak's growth per body in flight (how many times its own
# size a body costs while it is parsed, screened and forwarded) and RSS once the flood is over
# (what the allocator kept). Needs `sluice` and `sluice-sim` in ${CARGO_TARGET_DIR:-target}/PROFILE.
# Gateway settings go through the environment, e.g.
# SLUICE__SERVER__MAX_INFLIGHT_BODY_BYTES=67108864 for a 64 MiB body budget.
set -euo pipefail
cd "$(dirname "$0")/../.."
body_mib="${1:-15}" concurrency="${2:-24}" rounds="${3:-3}" profile="${4:-release}"
bin="${CARGO_TARGET_DIR:-target}/$profile"
for b in sluice sluice-sim; do
  [ -x "$bin/$b" ] || { echo "memory.sh: no $bin/$b (cargo build --$profile -p sluice-cli -p sluice-sim)" >&2; exit 2; }
done
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
source docs/bench/common.sh
sim=$(port) data=$(port) admin=$(port)
start_sim "$sim"
bench_config "$data" "$admin" "$sim" >"$work/gw.toml"
serve_and_wait "$work/gw.toml" "$work/data" "$admin"

python3 - "$data" "$gw_pid" "$body_mib" "$concurrency" "$rounds" <<'PY'
import http.client, json, sys, threading, time

port, pid, body_mib, concurrency, rounds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])

def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

message = {"role": "user", "content": "a short message of a long conversation, about rivers"}
one = len(json.dumps(message)) + 1
messages = [message] * int(body_mib * 1024 * 1024 / one)
body = json.dumps({"model": "bench-model", "messages": messages, "max_tokens": 4}).encode()
headers = {"Authorization": "Bearer sk-bench-0123456789", "Content-Type": "application/json"}

def warm():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", "/v1/chat/completions", json.dumps({"model": "bench-model", "messages": [message], "max_tokens": 4}), headers)
    c.getresponse().read()

for _ in range(20):
    warm()
time.sleep(1)
rest = rss_kib()
peak = rest
statuses = {}
errors = []
stop = False

def sample():
    global peak
    while not stop:
        peak = max(peak, rss_kib())
        time.sleep(0.05)

def send():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        c.request("POST", "/v1/chat/completions", body, headers)
        r = c.getresponse()
        answer = r.read()
    except OSError:
        # A body refused before it was read (503 from the body budget) is not drained past
        # 1 MiB: the client sending the rest sees the connection reset.
        statuses["reset"] = statuses.get("reset", 0) + 1
        return
    statuses[r.status] = statuses.get(r.status, 0) + 1
    if r.status != 200 and not errors:
        errors.append(answer[:300].decode(errors="replace"))

sampler = threading.Thread(target=sample)
sampler.start()
for _ in range(rounds):
    threads = [threading.Thread(target=send) for _ in range(concurrency)]
    for t in threads: t.start()
    for t in threads: t.join()
time.sleep(2)
stop = True
sampler.join()
after = rss_kib()
mib = lambda k: k / 1024
size = len(body) / 2**20
print(f"| body | in flight | rounds | RSS at rest | peak | peak growth per body | RSS after | answers |")
print(f"|---|---|---|---|---|---|---|---|")
print(f"| {size:.1f} MiB, {len(messages):,} messages | {concurrency} | {rounds} | {mib(rest):.0f} MiB | {mib(peak):.0f} MiB "
      f"| {(mib(peak) - mib(rest)) / concurrency / size:.1f}× its size | {mib(after):.0f} MiB | {dict(sorted(statuses.items(), key=str))} |")
for e in errors:
    print(f"first refusal: {e}")
PY
