"""The Dockerfile and .dockerignore, statically: there is no Docker engine to build with here."""

from .report import DEPLOY, ROOT


def check(report):
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for needle in ("FROM rust:", "cargo build --release --locked -p sluice-cli -p sluice-sim", "EXPOSE 8080 9090",
                   'ENTRYPOINT ["/usr/local/bin/sluice"]', "USER 65532"):
        report.check(needle in dockerfile, f"Dockerfile: expected {needle!r}")
    dockerignore = (ROOT / ".dockerignore").read_text().split()
    for needed in ("gateway", "simulator", "tests", "plugins", "dashboard", "migrations", "Cargo.toml", "Cargo.lock",
                   "rust-toolchain.toml"):
        report.check(needed not in dockerignore, f".dockerignore must not exclude {needed} (the build needs it)")
    report.note("Dockerfile and .dockerignore: static checks only (no Docker engine here; the image was not built)")
