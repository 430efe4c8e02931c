#!/usr/bin/env bash
# A soak (issue 22): sustained streaming load with cancellations, slow readers and worker faults,
# then checks that nothing grew and nothing was lost.
#
#   docs/bench/soak.sh [MINUTES] [CONNECTIONS] [PROFILE]   # default 10 24 release; at most 10 minutes
#
# Three simulated workers (timing sped up 20×), one of them failing 5% of its requests and
# another dropping its streams after 40 tokens; one gateway with the embedded store. CONNECTIONS
# clients loop until the time is up: 60% read a stream to its end, 15% hang up after a few
# events, 10% read slowly, 15% ask for a whole answer. Checked at the end (the script exits
# non-zero when one fails):
# - resident memory grows less than 5% from the end of the warm-up (the first fifth) to the end;
# - open file descriptors at the end are no more than at the end of the warm-up (+8 of slack);
# - requests in flight and client connections are back to 0 once the clients stop;
# - every request sent is in the usage table (read through the admin API after a flush).
# Needs `sluice` and `sluice-sim` in ${CARGO_TARGET_DIR:-target}/PROFILE.
set -euo pipefail
cd "$(dirname "$0")/../.."
minutes="${1:-10}" connections="${2:-24}" profile="${3:-release}"
awk -v m="$minutes" 'BEGIN { exit !(m > 0 && m <= 10) }' || { echo "soak.sh: MINUTES must be in (0, 10]" >&2; exit 2; }
bin="${CARGO_TARGET_DIR:-target}/$profile"
for b in sluice sluice-sim; do
  [ -x "$bin/$b" ] || { echo "soak.sh: no $bin/$b (cargo build --$profile -p sluice-cli -p sluice-sim)" >&2; exit 2; }
done
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
source docs/bench/common.sh
sims=() data=$(port) admin=$(port)
for faults in "" "--error-rate 0.05" "--drop-after-tokens 40"; do
  p=$(port)
  # shellcheck disable=SC2086
  "$bin/sluice-sim" --listen "127.0.0.1:$p" --model bench-model --speedup 20 --output-tokens 64 $faults >/dev/null 2>&1 &
  sims+=("\"http://127.0.0.1:$p\"")
done
endpoints=$(IFS=,; echo "${sims[*]}")
cat >"$work/gw.toml" <<TOML
[server]
listen = "127.0.0.1:$data"
admin_listen = "127.0.0.1:$admin"
[admin]
token = "env:SOAK_ADMIN_TOKEN"
[[pools]]
name = "soak"
models = ["bench-model"]
endpoints = [$endpoints]
[[tenants]]
name = "soak"
api_keys = ["sk-soak-0123456789abcdef"]
TOML
export SOAK_ADMIN_TOKEN=soak-admin-token-0123456789abcdef0123456789
serve_and_wait "$work/gw.toml" "$work/data" "$admin"

python3 - "$data" "$admin" "$gw_pid" "$minutes" "$connections" <<'PY'
import http.client, json, os, random, sys, threading, time, urllib.request

data, admin, pid, minutes, connections = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
token = os.environ["SOAK_ADMIN_TOKEN"]
key = "sk-soak-0123456789abcdef"

def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))

def fds():
    return len(os.listdir(f"/proc/{pid}/fd"))

def metric(name, having=""):
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10).read().decode()
    return sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith(name) and having in l)

lock = threading.Lock()
sent = {"stream": 0, "hang-up": 0, "slow": 0, "whole": 0}
statuses = {}
deadline = time.monotonic() + minutes * 60

def one(kind, rng):
    stream = kind != "whole"
    body = json.dumps({"model": "bench-model", "stream": stream, "max_tokens": 64,
                       "messages": [{"role": "user", "content": f"soak {rng.random()}"}]})
    c = http.client.HTTPConnection("127.0.0.1", data, timeout=60)
    try:
        c.request("POST", "/v1/chat/completions", body, {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        with lock:
            sent[kind] += 1
        r = c.getresponse()
        status = r.status
        if kind == "hang-up":
            r.read(300)
        elif kind == "slow":
            while r.read(64):
                time.sleep(0.02)
        else:
            r.read()
    except OSError:
        status = "reset"
    finally:
        c.close()
    with lock:
        statuses[status] = statuses.get(status, 0) + 1

def client(i):
    rng = random.Random(i)
    while time.monotonic() < deadline:
        x = rng.random()
        kind = "stream" if x < 0.60 else "hang-up" if x < 0.75 else "slow" if x < 0.85 else "whole"
        one(kind, rng)

threads = [threading.Thread(target=client, args=(i,)) for i in range(connections)]
start = time.monotonic()
for t in threads: t.start()
warm_at = start + minutes * 60 / 5
time.sleep(max(0, warm_at - time.monotonic()))
warm_rss, warm_fds = rss_kib(), fds()
peak_rss = warm_rss
# The curve: resident memory and descriptors every tenth of the run.
curve, next_sample = [], start
while time.monotonic() < deadline:
    now = time.monotonic()
    if now >= next_sample:
        curve.append((now - start, rss_kib(), fds()))
        next_sample = now + minutes * 6
    time.sleep(1)
    peak_rss = max(peak_rss, rss_kib())
for t in threads: t.join()
end_rss, end_fds = rss_kib(), fds()
time.sleep(2)
in_flight, open_conns = metric("sluice_requests_in_flight"), metric("sluice_connections_open", 'listener="data"')
time.sleep(7)  # two usage flushes (every 5 s by default)
req = urllib.request.Request(f"http://127.0.0.1:{admin}/admin/api/usage?tenant=soak", headers={"Authorization": f"Bearer {token}"})
usage = json.load(urllib.request.urlopen(req, timeout=10))
recorded = usage["totals"]["requests"]
total = sum(sent.values())
growth = (end_rss - warm_rss) / warm_rss
checks = [
    ("RSS growth after warm-up < 5%", growth < 0.05, f"{warm_rss/1024:.0f} → {end_rss/1024:.0f} MiB ({growth:+.1%}; peak {peak_rss/1024:.0f} MiB)"),
    ("open descriptors do not grow", end_fds <= warm_fds + 8, f"{warm_fds} → {end_fds}"),
    ("in flight and connections back to 0", in_flight == 0 and open_conns == 0, f"{in_flight:.0f} in flight, {open_conns:.0f} connections"),
    ("requests sent = requests in usage", recorded == total, f"{total:,} sent, {recorded:,} recorded"),
]
print(f"soak: {minutes:g} min, {connections} connections; sent {sent}; answers {dict(sorted(statuses.items(), key=str))}")
print("curve (s: RSS MiB / descriptors): " + ", ".join(f"{t:.0f}: {r/1024:.0f}/{d}" for t, r, d in curve))
print("| check | result | figures |")
print("|---|---|---|")
for name, ok, figures in checks:
    print(f"| {name} | {'pass' if ok else 'FAIL'} | {figures} |")
sys.exit(0 if all(ok for _, ok, _ in checks) else 1)
PY
