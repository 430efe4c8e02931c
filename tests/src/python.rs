//! Python clients for the tests that run official SDKs unchanged: a virtualenv of the test's
//! own, with packages from PyPI.

use std::path::PathBuf;
use std::process::Command;

use crate::temp::TempDir;

/// A virtualenv in `dir` with `packages` (pip requirement specifiers) installed; its python.
pub fn venv_with(dir: &TempDir, packages: &[&str]) -> PathBuf {
    let venv = dir.path().join("venv");
    let run = |cmd: &mut Command| {
        let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
    let python = venv.join("bin/python");
    run(Command::new(&python).args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]).args(packages));
    python
}
