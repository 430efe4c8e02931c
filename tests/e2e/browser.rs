//! The dashboard in a real browser: runs the playwright-core suite in `tests/browser/` (Debian's
//! headless Chromium against the `sluice demo` binary this harness built), so that the README's
//! one test command covers the UI too.
//!
//! Needs Node.js 20+, npm (the first run installs playwright-core from the npm registry; it
//! never downloads a browser) and Chromium at /usr/bin/chromium or `$CHROMIUM`. A missing
//! Chromium is installed from Debian's archive when the tests run as root with `apt-get`
//! (`sluice_e2e::chromium`); otherwise the test fails with the command to run. A machine that
//! cannot have a browser opts out with `SLUICE_SKIP_BROWSER_TESTS=1`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sluice_e2e::{TempDir, binaries};

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

fn run(mut cmd: Command, what: &str) -> Output {
    let output = cmd.output().unwrap_or_else(|e| panic!("{what}: could not start ({cmd:?}): {e}"));
    if !output.status.success() {
        panic!(
            "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output
}

#[test]
fn dashboard_in_chromium() {
    if std::env::var_os("SLUICE_SKIP_BROWSER_TESTS").is_some_and(|v| v == "1") {
        eprintln!("SLUICE_SKIP_BROWSER_TESTS=1: the dashboard's browser tests did not run");
        return;
    }
    let chromium = sluice_e2e::chromium::find_or_install();
    if !Command::new("npm").arg("--version").output().is_ok_and(|o| o.status.success()) {
        panic!(
            "the dashboard's browser tests need Node.js 20 or newer with npm on PATH \
             (https://nodejs.org/en/download); set SLUICE_SKIP_BROWSER_TESTS=1 to leave them out"
        );
    }
    let dir = suite_dir();
    if !dir.join("node_modules/playwright-core").is_dir() {
        let mut npm = Command::new("npm");
        npm.current_dir(&dir).args(["ci", "--no-audit", "--no-fund"]);
        run(npm, "npm ci in tests/browser");
    }

    let sluice = &binaries().sluice;
    // <target>/<profile>/sluice: the suite finds the built-in router component under <target>.
    let target_dir = sluice.parent().and_then(Path::parent).expect("the binary sits in <target>/<profile>/");
    let shots = TempDir::new("browser-screenshots");
    let mut node = Command::new("npm");
    node.current_dir(&dir)
        .args(["test", "--silent"])
        .env("SLUICE_BIN", sluice)
        .env("CARGO_TARGET_DIR", target_dir)
        .env("CHROMIUM", chromium)
        // Screenshots of a test run are not the documentation's: those are refreshed on purpose
        // by running the suite by hand (see tests/browser/dashboard.test.mjs).
        .env("SCREENSHOTS_DIR", shots.path());
    let output = run(node, "the dashboard's browser tests (tests/browser)");
    eprintln!("{}", String::from_utf8_lossy(&output.stdout));
}
