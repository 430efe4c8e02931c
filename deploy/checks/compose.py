"""deploy/compose.yaml: the Compose specification's schema, `docker compose config` where a
Compose CLI exists, HAProxy's own config check, and the references between the files."""

import re
import subprocess
from urllib.parse import urlparse

from .report import DEPLOY, rel, tool

COMPOSE = DEPLOY / "compose.yaml"
HAPROXY = DEPLOY / "haproxy/haproxy.cfg"
SERVICES = {"postgres", "migrate", "redis", "nats", "sluice-1", "sluice-2", "balancer", "worker-1", "worker-2",
            "worker-3", "prometheus", "grafana"}
REPLICAS = ("sluice-1", "sluice-2")


def _schema(report):
    checker = tool("check-jsonschema")
    if checker is None:
        report.skip("compose.yaml against the Compose specification's schema", "pip install check-jsonschema")
        return
    out = subprocess.run([checker, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)], capture_output=True,
                         text=True)
    if report.check(out.returncode == 0, f"compose.yaml against the compose-spec schema:\n{out.stdout}{out.stderr}"):
        report.note("compose.yaml: valid against the Compose specification's JSON schema (check-jsonschema)")


def _docker_compose(report):
    docker = tool("docker")
    has_compose = docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    if not has_compose:
        report.note("compose.yaml: `docker compose config` not run (no Compose CLI plugin on this machine)")
        return
    out = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True)
    if report.check(out.returncode == 0, f"docker compose config:\n{out.stderr}"):
        report.note("compose.yaml: `docker compose config` accepts it")


def _haproxy(report, services, config):
    text = HAPROXY.read_text()
    servers = re.findall(r"^\s*server\s+(\S+)\s+([\w.-]+):(\d+)", text, re.M)
    report.check({s for s, _, _ in servers} == set(REPLICAS), f"haproxy.cfg: servers {servers} are not the replicas")
    listen_port = config["server"]["listen"].rsplit(":", 1)[1]
    admin_port = config["server"]["admin_listen"].rsplit(":", 1)[1]
    for _, host, port in servers:
        report.check(host in services and port == listen_port, f"haproxy.cfg: {host}:{port} is not a replica's API")
    report.check(f"check port {admin_port}" in text and "uri /readyz" in text,
                 "haproxy.cfg: servers must be checked with /readyz on the admin port")
    published = {p.split(":")[-1] for p in services["balancer"].get("ports", [])}
    for port in re.findall(r"^\s*bind\s+:(\d+)", text, re.M):
        report.check(port in published, f"haproxy.cfg: bind :{port} is not published by the balancer service")
    haproxy = tool("haproxy")
    if haproxy is None:
        report.skip("haproxy -c on haproxy.cfg", "apt-get install haproxy")
        return
    out = subprocess.run([haproxy, "-c", "-f", str(HAPROXY)], capture_output=True, text=True)
    log = out.stdout + out.stderr
    # The replicas' names resolve only on compose's network; everything else must be clean.
    other = [line for line in log.splitlines()
             if ("[WARNING]" in line or "[ALERT]" in line) and "could not resolve address" not in line]
    if report.check(out.returncode == 0 and not other, f"haproxy -c -f {rel(HAPROXY)}:\n{log}"):
        report.note("haproxy.cfg: `haproxy -c` accepts it (the replicas' names resolve only inside compose)")


def check(report, docs):
    _schema(report)
    _docker_compose(report)
    compose = docs.get(COMPOSE, [{}])[0]
    services = compose.get("services", {})
    report.check(SERVICES <= set(services), f"compose.yaml lacks services {sorted(SERVICES - set(services))}")
    volumes = set(compose.get("volumes", {}))
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                report.check((DEPLOY / src).exists(), f"compose {name}: volume source {src} does not exist")
            else:
                report.check(src in volumes, f"compose {name}: named volume {src} is not declared")
        for dep in svc.get("depends_on", []):
            report.check(dep in services, f"compose {name}: depends on unknown service {dep}")
        build = svc.get("build")
        if build:
            report.check((DEPLOY / build["context"] / build["dockerfile"]).is_file(), f"compose {name}: no Dockerfile")

    def condition(svc, dep):
        deps = services.get(svc, {}).get("depends_on", {})
        return deps.get(dep, {}).get("condition") if isinstance(deps, dict) else None

    report.check(condition("migrate", "postgres") == "service_healthy" and "healthcheck" in services["postgres"],
                 "compose: migrate must wait for a healthy postgres")
    report.check(services["migrate"].get("command") == ["migrate"], "compose: the migrate service must run `sluice migrate`")
    config = docs[DEPLOY / "sluice.compose.toml"][0]
    report.check(config.get("database", {}).get("migrate") is False,
                 "sluice.compose.toml: [database] migrate = false (the migrate service applies them)")
    for replica in REPLICAS:
        svc = services[replica]
        report.check(condition(replica, "migrate") == "service_completed_successfully",
                     f"compose {replica}: must start after migrate completed")
        report.check(condition(replica, "redis") == "service_healthy", f"compose {replica}: must wait for redis")
        env = svc.get("environment", {})
        report.check(env.get("DATABASE_URL") == services["migrate"]["environment"]["DATABASE_URL"],
                     f"compose {replica}: DATABASE_URL differs from the migrate service's")
        for var, service in (("DATABASE_URL", "postgres"), ("REDIS_URL", "redis")):
            host = urlparse(env.get(var, "")).hostname
            report.check(host == service, f"compose {replica}: {var} must point at the {service} service, not {host}")
        refs = set(re.findall(r'"env:([A-Z0-9_]+)"', (DEPLOY / "sluice.compose.toml").read_text()))
        report.check(refs <= set(env), f"compose {replica}: sluice.compose.toml needs {sorted(refs - set(env))}")
        grace = int(svc.get("stop_grace_period", "0s").rstrip("s"))
        report.check(grace > int(config["server"]["shutdown_grace"].rstrip("s")),
                     f"compose {replica}: stop_grace_period must exceed server.shutdown_grace")
    worker_port = {name: svc["command"][svc["command"].index("--listen") + 1].rsplit(":", 1)[1]
                   for name, svc in services.items() if name.startswith("worker-")}
    for pool in config.get("pools", []):
        for e in pool["endpoints"]:
            url = urlparse(e["url"] if isinstance(e, dict) else e)
            report.check(worker_port.get(url.hostname) == str(url.port),
                         f"sluice.compose.toml: endpoint {url.geturl()} is not a worker service's port")
    prom = docs.get(DEPLOY / "prometheus/prometheus.yml", [{}])[0]
    for job in prom.get("scrape_configs", []):
        for sc in job.get("static_configs", []):
            for t in sc.get("targets", []):
                report.check(t.split(":")[0] in services or t.startswith("localhost:"),
                             f"prometheus.yml: target {t} is not a compose service")
    datasource = docs[DEPLOY / "grafana/provisioning/datasources/prometheus.yml"][0]["datasources"][0]
    report.check(urlparse(datasource["url"]).hostname == "prometheus", "grafana datasource: not the prometheus service")
    _haproxy(report, services, config)
    report.note("compose: services, dependencies, volumes, URLs, endpoints, scrape targets and the balancer agree")
