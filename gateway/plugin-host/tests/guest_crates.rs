//! The native unit tests of the plugins in `plugins/` (the router's and each example's decision
//! logic), which live in a cargo workspace of their own: run here so that `cargo test
//! --workspace` at the root runs them too. The test guests are left out: they are written for
//! wasm32 only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::path::Path;
use std::process::Command;

const WASM_ONLY: [&str; 3] =
    ["sluice-plugin-test-guest", "sluice-plugin-test-net-guest", "sluice-plugin-test-chunk-net-guest"];

#[test]
fn the_plugins_own_unit_tests_pass() {
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command.args(["test", "--locked", "--workspace", "--manifest-path"]).arg(plugins.join("Cargo.toml"));
    for package in WASM_ONLY {
        command.args(["--exclude", package]);
    }
    // Its own target directory: the outer test run holds the lock on the outer one.
    command.env("CARGO_TARGET_DIR", Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugins-native"));
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET", "RUSTC_WORKSPACE_WRAPPER"] {
        command.env_remove(var);
    }
    let output = command.output().expect("run cargo test in plugins/");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "cargo test in plugins/ failed\n{stdout}\n{stderr}");
    assert!(stdout.contains("test result: ok"), "no tests ran\n{stdout}\n{stderr}");
}
