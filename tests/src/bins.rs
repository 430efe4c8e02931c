//! Where the binaries under test come from.
//!
//! Cargo only exposes `CARGO_BIN_EXE_*` for a package's own binaries, and artifact
//! dependencies are not stable, so the harness runs `cargo build -p sluice-cli -p sluice-sim`
//! once per test process, with the cargo, profile and target directory that built the test
//! itself, and uses `<target>/<profile>/sluice` and `…/sluice-sim`. Cargo's own lock makes this
//! safe next to other builds; when nothing changed it takes a fraction of a second.
//!
//! `SLUICE_E2E_BIN_DIR=/path/to/dir` skips the build and uses the binaries found there (for
//! testing a release build or an installed copy).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

#[derive(Debug)]
pub struct Binaries {
    pub sluice: PathBuf,
    pub sim: PathBuf,
}

pub fn binaries() -> &'static Binaries {
    static BINS: OnceLock<Binaries> = OnceLock::new();
    BINS.get_or_init(|| {
        if let Some(dir) = std::env::var_os("SLUICE_E2E_BIN_DIR") {
            return in_dir(Path::new(&dir));
        }
        build()
    })
}

fn in_dir(dir: &Path) -> Binaries {
    let bins = Binaries { sluice: dir.join(exe("sluice")), sim: dir.join(exe("sluice-sim")) };
    for path in [&bins.sluice, &bins.sim] {
        assert!(path.is_file(), "{} does not exist", path.display());
    }
    bins
}

fn exe(name: &str) -> String {
    format!("{name}{}", std::env::consts::EXE_SUFFIX)
}

/// Set by cargo for the package under test (besides `CARGO_PKG_*`); not configuration.
const PACKAGE_VARS: &[&str] = &[
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "OUT_DIR",
];

fn build() -> Binaries {
    // The test executable is <target-dir>/<profile-dir>/deps/sluice_e2e-<hash>.
    let test_exe = std::env::current_exe().expect("locating the test executable");
    let profile_dir = test_exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("unexpected test executable location {}", test_exe.display()));
    let target_dir = profile_dir.parent().expect("the profile directory has a parent");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_owned(),
        Some(other) => other.to_owned(),
        None => panic!("unexpected profile directory {}", profile_dir.display()),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ lives in the workspace");
    let mut build = Command::new(&cargo);
    // Cargo gives the test process the variables it sets for the package being tested
    // (CARGO_PKG_NAME=sluice-e2e, CARGO_MANIFEST_DIR, …). Build scripts such as ring's watch
    // some of them (rerun-if-env-changed), so leaking them into the inner build would make it
    // rebuild those crates, and every ordinary build afterwards rebuild them back.
    for (name, _) in std::env::vars_os() {
        let name_str = name.to_string_lossy();
        if name_str.starts_with("CARGO_PKG_") || PACKAGE_VARS.contains(&name_str.as_ref()) {
            build.env_remove(&name);
        }
    }
    let status = build
        .current_dir(workspace)
        .env("CARGO_TARGET_DIR", target_dir)
        .args(["build", "--bins", "-p", "sluice-cli", "-p", "sluice-sim", "--profile", &profile])
        .status()
        .unwrap_or_else(|e| panic!("running {} build: {e}", cargo.to_string_lossy()));
    assert!(status.success(), "building sluice and sluice-sim failed ({status}); see the cargo output above");
    in_dir(profile_dir)
}

/// A `Command` for `sluice` whose environment carries no `SLUICE*` variables from the test's
/// own environment, so that a developer's shell cannot change what a test sees.
pub fn sluice() -> Command {
    hermetic(Command::new(&binaries().sluice))
}

/// Like [`sluice`], run by `wrapper`: a program and its leading arguments, followed by the path
/// of `sluice` (`["prlimit", "--nofile=256:256", "--"]` runs it under a descriptor limit). An
/// empty wrapper is [`sluice`] itself.
pub fn sluice_wrapped(wrapper: &[String]) -> Command {
    let Some((program, args)) = wrapper.split_first() else { return sluice() };
    let mut cmd = Command::new(program);
    cmd.args(args).arg(&binaries().sluice);
    hermetic(cmd)
}

/// Like [`sluice`], for `sluice-sim`.
pub fn sluice_sim() -> Command {
    hermetic(Command::new(&binaries().sim))
}

fn hermetic(mut cmd: Command) -> Command {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SLUICE") {
            cmd.env_remove(name);
        }
    }
    cmd
}
