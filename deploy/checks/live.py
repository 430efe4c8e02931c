"""The compose topology run for real, without Docker: `sluice migrate` on a fresh PostgreSQL
database, then two `sluice serve` replicas on deploy/sluice.compose.toml (its worker URLs pointed
at local `sluice-sim` processes, plus a few test-only pools and a tenant that make the failure,
queueing and rate-limit series exist), sharing the local PostgreSQL and Redis. Traffic through
both; then every metric name the dashboards and rules read must be on a live /metrics (the
replicas' or a worker's), every gateway family must be on a dashboard, and `promtool check
metrics` must be clean on the replicas' /metrics.

Needs PostgreSQL at 127.0.0.1:5432 (user postgres, database test, trust) with psql, and Redis
at 127.0.0.1:6379: what the development and CI machines run."""

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from . import bins
from .report import DEPLOY, tool

ADMIN_TOKEN = "deploy-check-admin-token-0123456789abcdef"
ACME_KEY = "sk-acme-0123456789"
LIMITED_KEY = "sk-limited-0123456789"
# Series Prometheus makes itself, never on a /metrics.
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
# Test-only pools, a plugin and a tenant appended to the compose config, so that failures,
# retries, ejections, a saturated pool's queue, plugin failures and rate-limit refusals happen and
# their series exist.
EXTRA = """
[[pools]]
name = "faulty"
models = ["broken-model"]
endpoints = [{{ url = "{faulty_1}", name = "faulty-1" }}, {{ url = "{faulty_2}", name = "faulty-2" }}]

[[pools]]
name = "narrow"
models = ["narrow-model"]
endpoints = [{{ url = "{narrow}", name = "narrow-1" }}]
[pools.upstream]
max_in_flight = 1
max_queued = 1
queue_timeout = "10s"

# A plugin that cannot instantiate in the memory it is given (the router needs 17 pages), so
# that plugin failures are counted; fail-open, so the requests still go through.
[[plugins]]
name = "undersized"
source = "builtin:router"
scope = {{ model = "broken-model" }}
failure = "open"
max_memory_bytes = 1048576

# The response cache for one model, so that its series exist.
[[plugins]]
name = "cache"
source = "builtin:cache"
scope = {{ model = "qwen3-8b" }}

[[tenants]]
name = "limited"
api_keys = ["{limited_key}"]
[tenants.limits]
requests_per_minute = 2
"""


class Proc:
    def __init__(self, name, argv, log_dir, env=None):
        self.name = name
        self.log = log_dir / f"{name}.log"
        with open(self.log, "wb") as log:
            self.p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env={**_clean_env(), **(env or {})})

    def tail(self):
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    def stop(self, timeout=35):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return self.p.returncode


def _clean_env():
    # Nothing from the caller's shell (SLUICE__*, DATABASE_URL, REDIS_URL) may change what runs.
    return {k: v for k, v in os.environ.items()
            if not k.startswith("SLUICE") and k not in ("DATABASE_URL", "REDIS_URL")}


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, key=None, timeout=30):
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def _wait_ready(proc, url, deadline=30):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.p.poll() is not None:
            raise RuntimeError(f"{proc.name} exited ({proc.p.returncode}):\n{proc.tail()}")
        try:
            if http("GET", url, timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} not ready at {url} after {deadline}s:\n{proc.tail()}")


def chat(api, model, key=ACME_KEY, stream=True):
    body = {"model": model, "stream": stream, "max_tokens": 8,
            "messages": [{"role": "user", "content": "Say hello to the deploy check."}]}
    return http("POST", f"{api}/v1/chat/completions", body, key=key)


def families(text):
    """Family names (# TYPE) and sample names of a Prometheus text exposition."""
    names = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    names |= {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    return names


def _psql(sql):
    return subprocess.run([tool("psql"), "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-q", "-c", sql],
                          capture_output=True, text=True)


def _services(report):
    missing = [t for t in ("psql", "redis-cli") if tool(t) is None]
    if missing:
        report.skip("the live check", f"needs {', '.join(missing)} and PostgreSQL/Redis on 127.0.0.1")
        return False
    pg = _psql("SELECT 1")
    redis = subprocess.run([tool("redis-cli"), "-h", "127.0.0.1", "ping"], capture_output=True, text=True)
    if pg.returncode != 0 or redis.stdout.strip() != "PONG":
        report.skip("the live check", f"PostgreSQL or Redis not answering on 127.0.0.1: {pg.stderr}{redis.stderr}")
        return False
    return True


def check_configs(report, sluice):
    """Every sluice config under deploy/ passes the real binary's --check-config."""
    env = {"SLUICE_ADMIN_TOKEN": ADMIN_TOKEN, "ACME_API_KEY": ACME_KEY}
    configs = [p for p in sorted(DEPLOY.rglob("*.toml")) if "[server]" in p.read_text()]
    for path in configs:
        out = subprocess.run([sluice, "serve", "--config", str(path), "--check-config"], capture_output=True,
                             text=True, env={**_clean_env(), **env})
        report.check(out.returncode == 0 and "config OK" in out.stdout,
                     f"sluice serve --check-config {path.relative_to(DEPLOY)}:\n{out.stdout}{out.stderr}")
    report.note(f"sluice serve --check-config accepts {len(configs)} configs under deploy/")


def run(report, used, recorded):
    """`used`: {where: metric names} from queries.check_parse; `recorded`: recording rules."""
    found = bins.locate(report)
    if found is None:
        return
    sluice, sim = found
    check_configs(report, sluice)
    if used is None or not _services(report):
        return
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="sluice-deploy-check-"))
    db = f"sluice_deploy_{os.getpid()}"
    prefix = f"sluice-deploy-{os.getpid()}:"
    procs = []
    try:
        for sql in (f"DROP DATABASE IF EXISTS {db}", f"CREATE DATABASE {db}"):
            out = _psql(sql)
            if not report.check(out.returncode == 0, f"psql {sql}: {out.stderr}"):
                return
        database_url = f"postgres://postgres@127.0.0.1:5432/{db}"

        def start_sim(name, *args):
            port = _free_port()
            p = Proc(name, [sim, "--listen", f"127.0.0.1:{port}", *args], tmp)
            procs.append(p)
            _wait_ready(p, f"http://127.0.0.1:{port}/health")
            return f"http://127.0.0.1:{port}"

        compose = DEPLOY / "compose.yaml"
        import yaml

        services = yaml.safe_load(compose.read_text())["services"]
        urls = {}
        for name in ("worker-1", "worker-2", "worker-3"):
            args = list(services[name]["command"])
            i = args.index("--listen")
            del args[i:i + 2]
            urls[name] = start_sim(name, *args)
        faulty_1 = start_sim("faulty-1", "--model", "broken-model", "--error-rate", "1.0")
        faulty_2 = start_sim("faulty-2", "--model", "broken-model", "--error-rate", "1.0")
        narrow = start_sim("narrow-1", "--model", "narrow-model", "--stall-first-token-ms", "600")
        config = (DEPLOY / "sluice.compose.toml").read_text()
        for name, url in urls.items():
            config = config.replace(f"http://{name}:8001", url)
        config += EXTRA.format(faulty_1=faulty_1, faulty_2=faulty_2, narrow=narrow, limited_key=LIMITED_KEY)
        config_path = tmp / "sluice.toml"
        config_path.write_text(config)
        env = {"DATABASE_URL": database_url, "REDIS_URL": "redis://127.0.0.1:6379", "SLUICE__REDIS__KEY_PREFIX": prefix,
               "SLUICE_ADMIN_TOKEN": ADMIN_TOKEN, "ACME_API_KEY": ACME_KEY}

        # As compose does: the one-shot migration, then both replicas at once.
        out = subprocess.run([sluice, "migrate"], capture_output=True, text=True, env={**_clean_env(), **env})
        if not report.check(out.returncode == 0 and "store migrated" in out.stdout,
                            f"sluice migrate: exit {out.returncode}\n{out.stdout}{out.stderr}"):
            return
        replicas = []
        for n in (1, 2):
            listen, admin = _free_port(), _free_port()
            p = Proc(f"sluice-{n}", [sluice, "serve", "--config", str(config_path)], tmp,
                     {**env, "SLUICE__SERVER__LISTEN": f"127.0.0.1:{listen}",
                      "SLUICE__SERVER__ADMIN_LISTEN": f"127.0.0.1:{admin}"})
            procs.append(p)
            replicas.append((p, f"http://127.0.0.1:{listen}", f"http://127.0.0.1:{admin}"))
        for p, _, admin in replicas:
            _wait_ready(p, f"{admin}/readyz")
        report.note("live: `sluice migrate` then two replicas on sluice.compose.toml, sharing PostgreSQL and Redis")
        _traffic(report, replicas)
        gateway = [http("GET", f"{admin}/metrics")[1] for _, _, admin in replicas]
        worker = http("GET", f"{urls['worker-1']}/metrics")[1]
        for name, text in (("sluice-1", gateway[0]), ("sluice-2", gateway[1]), ("worker-1", worker)):
            (tmp / f"{name}.metrics").write_text(text)
        _compare(report, used, recorded, set().union(*map(families, gateway)), families(worker))
        _promtool(report, gateway)
        for p, _, _ in replicas:
            code = p.stop()
            report.check(code == 0, f"{p.name}: SIGTERM should drain and exit 0, got {code}\n{p.tail()}")
    except RuntimeError as e:
        report.fail(f"live check: {e}")
    finally:
        for p in procs:
            p.stop(timeout=5)
        _psql(f"DROP DATABASE IF EXISTS {db}")
        keys = subprocess.run([tool("redis-cli"), "-h", "127.0.0.1", "--scan", "--pattern", f"{prefix}*"],
                              capture_output=True, text=True).stdout.split()
        if keys:
            subprocess.run([tool("redis-cli"), "-h", "127.0.0.1", "DEL", *keys], capture_output=True)
        if not report.failures:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"live check logs kept in {tmp}", file=sys.stderr)


def _traffic(report, replicas):
    (_, api_1, _), (_, api_2, _) = replicas
    for api in (api_1, api_2):
        for stream in (True, True, False):
            status, body = chat(api, "llama-3-8b", stream=stream)
            report.check(status == 200 and "error" not in body[:200], f"{api} llama-3-8b: {status} {body[:300]}")
        status, body = chat(api, "qwen3-8b")
        report.check(status == 200, f"{api} qwen3-8b: {status} {body[:300]}")
    # A deterministic request twice: a miss, stored (in Redis, after the answer), then a hit.
    cached = {"model": "qwen3-8b", "temperature": 0, "max_tokens": 8,
              "messages": [{"role": "user", "content": "Say hello to the cache."}]}
    first = http("POST", f"{api_1}/v1/chat/completions", cached, key=ACME_KEY)[0]
    time.sleep(0.5)
    second = http("POST", f"{api_2}/v1/chat/completions", cached, key=ACME_KEY)[0]
    report.check((first, second) == (200, 200), f"cached requests: expected 200, 200, got {first}, {second}")
    # Two requests a minute (a burst of one) for `limited`, counted in Redis: the second, sent to
    # the other replica, is refused there.
    codes = [chat(api, "llama-3-8b", key=LIMITED_KEY)[0] for api in (api_1, api_2)]
    report.check(codes == [200, 429], f"rate limit shared through Redis: expected 200 then 429, got {codes}")
    # Every attempt fails: upstream errors, retries, ejections, then 503 for want of an endpoint.
    codes = [chat(api_1, "broken-model")[0] for _ in range(6)]
    report.check(all(c in (502, 503) for c in codes), f"faulty pool: expected 502/503, got {codes}")
    # One endpoint holding one request: the second waits in the queue, the third finds it full.
    results = []

    def send():
        results.append(chat(api_1, "narrow-model")[0])

    threads = [threading.Thread(target=send) for _ in range(3)]
    for t in threads:
        t.start()
        time.sleep(0.15)
    for t in threads:
        t.join()
    report.check(sorted(results) == [200, 200, 503], f"saturated pool: expected 200, 200, 503, got {sorted(results)}")
    report.note("live: traffic through both replicas (streams, whole answers, two models, a shared rate limit, "
                "the response cache, a failing pool, a saturated pool)")


def _compare(report, used, recorded, gateway, worker):
    live = gateway | worker | recorded | SYNTHETIC
    for where, names in sorted(used.items()):
        for name in sorted(names):
            report.check(name in live, f"{where}: metric {name!r} is not on a live /metrics (gateway or worker)")
    shown = set().union(*used.values())
    base = {n for n in gateway if re.match(r"(sluice|gen_ai)_", n)}
    # A histogram's family covers its _bucket, _sum and _count samples.
    families_ = {n for n in base if not any(n.endswith(s) and n[: -len(s)] in base for s in ("_bucket", "_sum", "_count"))}
    covered = {n for n in families_ if n in shown or any(f"{n}{s}" in shown for s in ("_bucket", "_sum", "_count"))}
    report.check(covered == families_, f"dashboards: gateway metrics on /metrics but on no dashboard: "
                 f"{sorted(families_ - covered)}")
    report.note(f"live: {sum(map(len, used.values()))} metric references checked against /metrics "
                f"({len(families_)} gateway families, all on a dashboard; {len(worker)} worker series names)")


def _promtool(report, texts):
    if tool("promtool") is None:
        report.skip("promtool check metrics", "apt-get install prometheus")
        return
    for i, text in enumerate(texts, 1):
        out = subprocess.run([tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True)
        report.check(out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(),
                     f"promtool check metrics on sluice-{i}'s /metrics:\n{out.stdout}{out.stderr}")
    report.note("live: `promtool check metrics` is clean on both replicas' /metrics")
