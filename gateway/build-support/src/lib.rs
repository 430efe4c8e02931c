//! What Sluice's build scripts need from the Rust toolchain: the targets they compile other
//! workspaces for (`wasm32-unknown-unknown` for the dashboard, `wasm32-wasip2` for the built-in
//! plugins).
//!
//! `rust-toolchain.toml` lists both targets, but rustup adds a toolchain file's targets only
//! when it installs the toolchain: on a machine where the pinned toolchain was already present,
//! the first build failed deep inside the dashboard's build with "can't find crate for `core`".
//! [`ensure_target`] checks the compiler's sysroot before such a build and, when the target is
//! missing and rustup is there, runs `rustup target add` (saying so with a `cargo:warning`);
//! otherwise it fails with the one command to run. `SLUICE_NO_TARGET_INSTALL=1` turns the
//! installing off for builds that must not touch the toolchain (packagers, sandboxes).

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The variable that keeps [`ensure_target`] from installing anything.
pub const NO_INSTALL_VAR: &str = "SLUICE_NO_TARGET_INSTALL";

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("cannot ask {rustc} for its sysroot: {reason}")]
    Sysroot { rustc: String, reason: String },
    #[error(
        "{what} is built for {target}, which the Rust toolchain at {sysroot} does not have{why}.\n\
         Install it with:\n\n    rustup target add {target}\n"
    )]
    Missing { what: String, target: String, sysroot: String, why: &'static str },
    #[error(
        "{what} is built for {target}, which the Rust toolchain at {sysroot} does not have, and \
         installing it failed ({reason}).\nInstall it with:\n\n    rustup target add {target}\n"
    )]
    InstallFailed { what: String, target: String, sysroot: String, reason: String },
}

/// What to do about one target, from what was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// The target's standard library is in the sysroot.
    Ready,
    /// Missing, and rustup may add it.
    Install,
    /// Missing, and nothing here may add it: stop with the command to run.
    Fail { rustup: bool },
}

/// The decision, apart from the probing so that it can be tested.
pub fn plan(installed: bool, rustup_available: bool, install_allowed: bool) -> Plan {
    match (installed, rustup_available && install_allowed) {
        (true, _) => Plan::Ready,
        (false, true) => Plan::Install,
        (false, false) => Plan::Fail { rustup: rustup_available },
    }
}

/// Whether the toolchain whose sysroot is `sysroot` can compile for `target`: its `core` is
/// there (`lib/rustlib/<target>/lib/libcore-*.rlib`), as rustup and distribution packages lay
/// it out.
pub fn is_installed(sysroot: &Path, target: &str) -> bool {
    let lib = sysroot.join("lib").join("rustlib").join(target).join("lib");
    let Ok(entries) = std::fs::read_dir(lib) else { return false };
    entries.filter_map(Result::ok).any(|entry| {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        name.starts_with("libcore-") && name.ends_with(".rlib")
    })
}

/// The programs [`Toolchain::ensure`] asks and runs, each as a program and its first
/// arguments.
#[derive(Debug, Clone)]
pub struct Toolchain {
    pub rustc: Vec<OsString>,
    pub rustup: Vec<OsString>,
    pub install_allowed: bool,
}

/// Whether `target` had to be installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    AlreadyThere,
    Installed,
}

/// [`Toolchain::ensure`] for the toolchain of this build: cargo's `$RUSTC`, `rustup` from
/// `PATH`, installing unless `SLUICE_NO_TARGET_INSTALL=1`. `what` is named in messages ("the
/// dashboard"). Call from a build script before building for `target`.
#[expect(clippy::print_stdout, reason = "cargo reads a build script's instructions from its stdout")]
pub fn ensure_target(target: &str, what: &str) -> Result<Ensured, TargetError> {
    println!("cargo:rerun-if-env-changed={NO_INSTALL_VAR}");
    Toolchain::from_env().ensure(target, what)
}

impl Toolchain {
    pub fn from_env() -> Self {
        Toolchain {
            rustc: vec![std::env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"))],
            rustup: vec![OsString::from("rustup")],
            install_allowed: std::env::var_os(NO_INSTALL_VAR).is_none_or(|v| v != "1"),
        }
    }

    /// The compiler's sysroot (`rustc --print sysroot`).
    pub fn sysroot(&self) -> Result<PathBuf, TargetError> {
        let shown = shown(&self.rustc);
        let output = command(&self.rustc)
            .args(["--print", "sysroot"])
            .output()
            .map_err(|e| TargetError::Sysroot { rustc: shown.clone(), reason: e.to_string() })?;
        if !output.status.success() {
            let reason = format!("{}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
            return Err(TargetError::Sysroot { rustc: shown, reason });
        }
        Ok(PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
    }

    fn rustup_available(&self) -> bool {
        command(&self.rustup).arg("--version").output().is_ok_and(|o| o.status.success())
    }

    /// Makes sure the compiler can build for `target`: nothing to do, rustup adds it (with a
    /// `cargo:warning` saying so), or an error naming the command to run.
    #[expect(clippy::print_stdout, reason = "cargo reads a build script's warnings from its stdout")]
    pub fn ensure(&self, target: &str, what: &str) -> Result<Ensured, TargetError> {
        let sysroot = self.sysroot()?;
        let missing = |why: &'static str| TargetError::Missing {
            what: what.to_owned(),
            target: target.to_owned(),
            sysroot: sysroot.display().to_string(),
            why,
        };
        match plan(is_installed(&sysroot, target), self.rustup_available(), self.install_allowed) {
            Plan::Ready => return Ok(Ensured::AlreadyThere),
            Plan::Fail { rustup: false } => {
                return Err(missing(" and rustup, which would add it, is not on PATH"));
            }
            Plan::Fail { rustup: true } => return Err(missing(" (not installing it: SLUICE_NO_TARGET_INSTALL=1)")),
            Plan::Install => {}
        }
        // Build scripts of several crates (and several cargo processes) may get here at once,
        // and rustup does not guard its installs against each other. Without a lock file the
        // install still runs; the check after it tells whether it worked.
        let _lock = lock_file().and_then(|f| f.lock().map(|()| f)).ok();
        if is_installed(&sysroot, target) {
            return Ok(Ensured::AlreadyThere);
        }
        println!("cargo:warning=the Rust target {target} is missing; installing it: rustup target add {target}");
        let failed = |reason: String| TargetError::InstallFailed {
            what: what.to_owned(),
            target: target.to_owned(),
            sysroot: sysroot.display().to_string(),
            reason,
        };
        // rustup installs for the toolchain of this build: it set RUSTUP_TOOLCHAIN for cargo.
        match command(&self.rustup).args(["target", "add", target]).output() {
            Err(e) => return Err(failed(e.to_string())),
            Ok(out) if !out.status.success() => {
                return Err(failed(format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim())));
            }
            Ok(_) => {}
        }
        // rustup may have served another toolchain than the compiler of this build (a rustc
        // rustup does not manage): only the sysroot says whether the build can go on.
        if !is_installed(&sysroot, target) {
            return Err(failed(format!("rustup added it to another toolchain than {}", sysroot.display())));
        }
        Ok(Ensured::Installed)
    }
}

fn command(argv: &[OsString]) -> Command {
    let mut command = Command::new(argv.first().map_or_else(OsString::new, OsString::clone));
    command.args(argv.iter().skip(1));
    command
}

fn shown(argv: &[OsString]) -> String {
    argv.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
}

fn lock_file() -> std::io::Result<File> {
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("sluice-rustup-target.lock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_only_what_is_missing_and_only_with_rustup() {
        assert_eq!(plan(true, true, true), Plan::Ready);
        assert_eq!(plan(true, false, false), Plan::Ready);
        assert_eq!(plan(false, true, true), Plan::Install);
        assert_eq!(plan(false, false, true), Plan::Fail { rustup: false });
        assert_eq!(plan(false, true, false), Plan::Fail { rustup: true });
    }

    #[test]
    fn a_target_is_installed_when_its_core_is_in_the_sysroot() {
        let sysroot = tempfile::tempdir().unwrap();
        let lib = sysroot.path().join("lib/rustlib/wasm32-unknown-unknown/lib");
        assert!(!is_installed(sysroot.path(), "wasm32-unknown-unknown"), "no directory");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::write(lib.join("libstd-0123.rlib"), b"").unwrap();
        assert!(!is_installed(sysroot.path(), "wasm32-unknown-unknown"), "no core");
        std::fs::write(lib.join("libcore-4567.rlib"), b"").unwrap();
        assert!(is_installed(sysroot.path(), "wasm32-unknown-unknown"));
        assert!(!is_installed(sysroot.path(), "wasm32-wasip2"), "another target");
    }

    #[test]
    fn the_toolchain_running_these_tests_has_its_host_target() {
        let sysroot = Toolchain::from_env().sysroot().unwrap();
        let version = Command::new("rustc").arg("-vV").output().unwrap();
        let version = String::from_utf8(version.stdout).unwrap();
        let host = version.lines().find_map(|l| l.strip_prefix("host: ")).unwrap();
        assert!(is_installed(&sysroot, host), "{host} in {}", sysroot.display());
        assert!(!is_installed(&sysroot, "no-such-target"));
    }

    #[test]
    fn messages_name_the_one_command_to_run() {
        let e = TargetError::Missing {
            what: "the dashboard".into(),
            target: "wasm32-unknown-unknown".into(),
            sysroot: "/opt/rust".into(),
            why: " and rustup, which would add it, is not on PATH",
        };
        let text = e.to_string();
        assert!(text.starts_with("the dashboard is built for wasm32-unknown-unknown"), "{text}");
        assert!(text.contains("\n    rustup target add wasm32-unknown-unknown\n"), "{text}");
    }

    /// A stand-in toolchain in a temporary directory: `rustc` prints a sysroot there, `rustup`
    /// runs `rustup_script` (shell, `$SYSROOT` set). Run through `sh` so that no freshly
    /// written file is executed directly (ETXTBSY while another test thread forks).
    struct Fake {
        dir: tempfile::TempDir,
    }

    const TARGET: &str = "wasm32-unknown-unknown";

    impl Fake {
        fn new(rustup_script: &str) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let sysroot = dir.path().join("sysroot");
            std::fs::create_dir_all(sysroot.join("lib/rustlib/x86_64-unknown-linux-gnu/lib")).unwrap();
            std::fs::write(dir.path().join("rustc.sh"), format!("echo '{}'\n", sysroot.display())).unwrap();
            let rustup = format!("SYSROOT='{}'\n{rustup_script}\n", sysroot.display());
            std::fs::write(dir.path().join("rustup.sh"), rustup).unwrap();
            Fake { dir }
        }

        fn toolchain(&self, install_allowed: bool) -> Toolchain {
            let sh = |name: &str| vec![OsString::from("sh"), self.dir.path().join(name).into_os_string()];
            Toolchain { rustc: sh("rustc.sh"), rustup: sh("rustup.sh"), install_allowed }
        }

        fn log(&self) -> String {
            std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
        }
    }

    /// A rustup that installs the target into the fake sysroot, logging what it was asked.
    const INSTALLING_RUSTUP: &str = r#"echo "$@" >> "$(dirname "$0")/log"
if [ "$1" = target ]; then mkdir -p "$SYSROOT/lib/rustlib/$3/lib" && touch "$SYSROOT/lib/rustlib/$3/lib/libcore-0.rlib"; fi"#;

    #[test]
    fn a_missing_target_is_installed_once_with_rustup() {
        let fake = Fake::new(INSTALLING_RUSTUP);
        let toolchain = fake.toolchain(true);
        assert_eq!(toolchain.ensure(TARGET, "the dashboard").unwrap(), Ensured::Installed);
        assert!(fake.log().contains(&format!("target add {TARGET}")), "{}", fake.log());
        assert_eq!(toolchain.ensure(TARGET, "the dashboard").unwrap(), Ensured::AlreadyThere);
        assert_eq!(fake.log().matches("target add").count(), 1, "{}", fake.log());
    }

    #[test]
    fn without_rustup_or_with_installing_turned_off_the_build_stops_with_the_command() {
        let fake = Fake::new(INSTALLING_RUSTUP);
        let e = fake.toolchain(false).ensure(TARGET, "the dashboard").unwrap_err();
        assert!(matches!(e, TargetError::Missing { .. }), "{e}");
        assert!(e.to_string().contains("SLUICE_NO_TARGET_INSTALL=1"), "{e}");
        assert!(e.to_string().contains("rustup target add wasm32-unknown-unknown"), "{e}");
        assert!(!fake.log().contains("target add"), "nothing installed: {}", fake.log());

        let mut no_rustup = fake.toolchain(true);
        no_rustup.rustup = vec![fake.dir.path().join("no-such-rustup").into_os_string()];
        let e = no_rustup.ensure(TARGET, "the dashboard").unwrap_err();
        assert!(e.to_string().contains("rustup, which would add it, is not on PATH"), "{e}");
    }

    #[test]
    fn a_failed_install_or_one_into_another_toolchain_is_an_error() {
        let offline = Fake::new(r#"[ "$1" = target ] && { echo "error: could not download" >&2; exit 1; }; exit 0"#);
        let e = offline.toolchain(true).ensure(TARGET, "the dashboard").unwrap_err();
        assert!(matches!(e, TargetError::InstallFailed { .. }), "{e}");
        assert!(e.to_string().contains("could not download"), "{e}");
        assert!(e.to_string().contains("rustup target add wasm32-unknown-unknown"), "{e}");

        let elsewhere = Fake::new("exit 0");
        let e = elsewhere.toolchain(true).ensure(TARGET, "the dashboard").unwrap_err();
        assert!(e.to_string().contains("another toolchain"), "{e}");
    }
}
