"""The `sluice` and `sluice-sim` binaries under test: from SLUICE_E2E_BIN_DIR (as the end-to-end
tests take them), else built with the same cargo command the end-to-end harness runs, so the
two share one build."""

import json
import os
import shutil
import subprocess
from pathlib import Path

from .report import ROOT

BUILD = ["build", "--locked", "--bins", "-p", "sluice-cli", "-p", "sluice-sim", "--profile", "dev"]


def locate(report):
    given = os.environ.get("SLUICE_E2E_BIN_DIR")
    if given:
        found = (Path(given) / "sluice", Path(given) / "sluice-sim")
        if report.check(all(p.is_file() for p in found), f"SLUICE_E2E_BIN_DIR={given} lacks sluice or sluice-sim"):
            return tuple(map(str, found))
        return None
    cargo = shutil.which("cargo")
    if cargo is None:
        report.skip("the checks that run the binaries", "no cargo to build sluice and sluice-sim")
        return None
    out = subprocess.run([cargo, *BUILD], cwd=ROOT)
    if not report.check(out.returncode == 0, f"cargo {' '.join(BUILD)} failed (see above)"):
        return None
    meta = subprocess.run([cargo, "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    target = Path(json.loads(meta.stdout)["target_directory"]) / "debug"
    return str(target / "sluice"), str(target / "sluice-sim")
