"""Prometheus's own checker on the scrape config and the rules (promtool, Debian's
`prometheus` package), and the rules' unit tests when there are any."""

import subprocess

from .report import DEPLOY, rel, tool

PROM = DEPLOY / "prometheus"


def _promtool(report, *args):
    out = subprocess.run([tool("promtool"), *args], capture_output=True, text=True, cwd=PROM)
    report.check(out.returncode == 0, f"promtool {' '.join(args)}:\n{out.stdout}{out.stderr}")
    return out.returncode == 0


def check(report):
    if tool("promtool") is None:
        report.skip("promtool check config / check rules", "apt-get install prometheus")
        return
    ok = _promtool(report, "check", "config", "prometheus.yml")
    ok &= _promtool(report, "check", "rules", "alerts.yml")
    tests = sorted(PROM.glob("*.test.yml"))
    for t in tests:
        ok &= _promtool(report, "test", "rules", t.name)
    if ok:
        report.note(f"promtool: {rel(PROM / 'prometheus.yml')} and its rules are valid"
                    + (f"; rule tests pass ({', '.join(t.name for t in tests)})" if tests else ""))
