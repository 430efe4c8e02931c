"""What the checks found: failures, skipped checks and notes, printed at the end."""

import shutil
import sys
from pathlib import Path

DEPLOY = Path(__file__).resolve().parent.parent
ROOT = DEPLOY.parent


def rel(path):
    try:
        return Path(path).resolve().relative_to(ROOT)
    except ValueError:
        return Path(path)


def tool(name):
    """A command-line tool: beside this Python first (a venv's bin/), then on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    return shutil.which(name)


class Report:
    def __init__(self, require_all):
        # With require_all (CI), a check that cannot run is a failure, never a silent pass.
        self.require_all = require_all
        self.failures = []
        self.skipped = []
        self.notes = []

    def check(self, ok, message):
        if not ok:
            self.failures.append(message)
        return ok

    def fail(self, message):
        self.failures.append(message)

    def note(self, message):
        self.notes.append(message)

    def skip(self, what, how):
        message = f"{what}: {how}"
        if self.require_all:
            self.failures.append(f"could not run {message}")
        else:
            self.skipped.append(message)

    def finish(self):
        for n in self.notes:
            print(f"  {n}")
        for s in self.skipped:
            print(f"  SKIP {s}")
        if self.failures:
            print(f"\n{len(self.failures)} problem(s):")
            for f in self.failures:
                print(f"  FAIL {f}")
            return 1
        print("deploy/: all checks passed" + (f" ({len(self.skipped)} skipped)" if self.skipped else ""))
        return 0
