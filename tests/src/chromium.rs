//! Chromium for the dashboard's browser tests (`e2e/browser.rs`), so that the README's one test
//! command passes on a fresh machine: the browser the tests name (`$CHROMIUM`), else Debian's
//! `/usr/bin/chromium`; when that is missing and the tests run as root with `apt-get`, they
//! install Debian's package and say so; otherwise they fail with the one command to run.
//! A browser is never downloaded from anywhere but the distribution's archive. (playwright-core
//! drives Chromium over its DevTools protocol, so no chromedriver is needed.)

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where Debian's `chromium` package puts the browser.
pub const DEBIAN_CHROMIUM: &str = "/usr/bin/chromium";

/// What to tell a user who has to install it.
pub const INSTALL_COMMAND: &str = "sudo apt-get install -y chromium";

/// Held while installing, so that test processes running at once install once: the second
/// one waits, then finds the browser.
const LOCK_FILE: &str = "sluice-chromium-install.lock";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Use(PathBuf),
    Install,
    Fail(String),
}

/// The decision, from what was found: `named` is `$CHROMIUM` and whether it is a file.
pub fn plan(named: Option<(PathBuf, bool)>, debian_present: bool, root: bool, apt: bool) -> Plan {
    match named {
        Some((path, true)) => return Plan::Use(path),
        // Named on purpose: installing another browser would test something else.
        Some((path, false)) => {
            return Plan::Fail(format!("$CHROMIUM names {}, which is not a file", path.display()));
        }
        None => {}
    }
    if debian_present {
        Plan::Use(PathBuf::from(DEBIAN_CHROMIUM))
    } else if root && apt {
        Plan::Install
    } else {
        Plan::Fail(format!(
            "the dashboard's browser tests need Chromium at {DEBIAN_CHROMIUM} (or $CHROMIUM naming one). Install it with:\n\n    \
             {INSTALL_COMMAND}\n\n(set SLUICE_SKIP_BROWSER_TESTS=1 to leave these tests out)"
        ))
    }
}

/// The browser to run, installed first when [`plan`] says so. Panics with what to do when
/// there is none.
pub fn find_or_install() -> PathBuf {
    let named = std::env::var_os("CHROMIUM").map(PathBuf::from).map(|p| {
        let is_file = p.is_file();
        (p, is_file)
    });
    match plan(named, Path::new(DEBIAN_CHROMIUM).is_file(), running_as_root(), apt_available()) {
        Plan::Use(path) => path,
        Plan::Fail(message) => panic!("{message}"),
        Plan::Install => {
            let installer = Installer {
                apt_get: vec![OsString::from("apt-get")],
                browser: PathBuf::from(DEBIAN_CHROMIUM),
                lock: std::env::temp_dir().join(LOCK_FILE),
            };
            installer.install().unwrap_or_else(|message| panic!("{message}"))
        }
    }
}

/// Installs Debian's `chromium` package with `apt_get` (a program and its first arguments) so
/// that `browser` appears, one process at a time (`lock`).
struct Installer {
    apt_get: Vec<OsString>,
    browser: PathBuf,
    lock: PathBuf,
}

impl Installer {
    #[expect(clippy::print_stderr, reason = "a test that changes the machine says so in its output")]
    fn install(&self) -> Result<PathBuf, String> {
        let lock = File::options().create(true).truncate(false).write(true).open(&self.lock);
        let _lock = lock
            .and_then(|f| f.lock().map(|()| f))
            .map_err(|e| format!("cannot take the install lock {}: {e}", self.lock.display()))?;
        if self.browser.is_file() {
            // Another test process installed it while this one waited.
            return Ok(self.browser.clone());
        }
        eprintln!(
            "Chromium is missing: installing Debian's package for the dashboard's browser tests \
             (apt-get install -y chromium, as root)"
        );
        // A stale package index is the usual reason for "unable to locate package" on a fresh
        // machine, so a failed install is retried once after an update.
        let mut output = self.apt_get(&["install", "-y", "-q", "chromium"])?;
        if !output.status.success() {
            let update = self.apt_get(&["update", "-q"])?;
            output = if update.status.success() { self.apt_get(&["install", "-y", "-q", "chromium"])? } else { update };
        }
        if !output.status.success() || !self.browser.is_file() {
            return Err(format!(
                "installing Chromium failed ({}):\n{}\nInstall it with:\n\n    {INSTALL_COMMAND}\n",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        eprintln!("Chromium installed at {}", self.browser.display());
        Ok(self.browser.clone())
    }

    fn apt_get(&self, args: &[&str]) -> Result<Output, String> {
        let (program, first) = self.apt_get.split_first().ok_or("no apt-get to run")?;
        Command::new(program)
            .args(first)
            .env("DEBIAN_FRONTEND", "noninteractive")
            // Wait for another dpkg (unattended upgrades, a CI step) instead of failing at once.
            .args(["-o", "DPkg::Lock::Timeout=300"])
            .args(args)
            .output()
            .map_err(|e| format!("cannot run apt-get: {e}"))
    }
}

fn apt_available() -> bool {
    Command::new("apt-get").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// The effective user id is 0 (from `/proc/self/status`; no libc binding in this crate).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| effective_uid(&status) == Some(0))
}

/// `Uid:` lists the real, effective, saved and filesystem ids.
fn effective_uid(status: &str) -> Option<u32> {
    status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_browser_is_used_or_reported_never_replaced() {
        let named = PathBuf::from("/opt/chrome/chrome");
        assert_eq!(plan(Some((named.clone(), true)), false, true, true), Plan::Use(named.clone()));
        let Plan::Fail(message) = plan(Some((named, false)), true, true, true) else { panic!("must fail") };
        assert!(message.contains("/opt/chrome/chrome"), "{message}");
    }

    #[test]
    fn debians_browser_is_used_installed_as_root_with_apt_or_asked_for() {
        assert_eq!(plan(None, true, false, false), Plan::Use(PathBuf::from(DEBIAN_CHROMIUM)));
        assert_eq!(plan(None, false, true, true), Plan::Install);
        for (root, apt) in [(false, true), (true, false), (false, false)] {
            let Plan::Fail(message) = plan(None, false, root, apt) else { panic!("root {root}, apt {apt}") };
            assert!(message.contains("\n    sudo apt-get install -y chromium\n"), "{message}");
        }
    }

    #[test]
    fn the_effective_uid_is_the_second_field() {
        assert_eq!(effective_uid("Name:\tcargo\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n"), Some(0));
        assert_eq!(effective_uid("Uid:\t0\t1000\t1000\t1000\n"), Some(1000));
        assert_eq!(effective_uid("Name:\tx\n"), None);
    }

    /// A stand-in `apt-get` (run through `sh`, so that no freshly written file is executed
    /// directly) that logs its arguments and runs `on_install` for `install`.
    fn installer(dir: &Path, on_install: &str) -> Installer {
        let script = format!(
            "cd '{}'\necho \"$DEBIAN_FRONTEND $@\" >> log\ncase \"$*\" in *update*) touch updated ;; *install*) {on_install} ;; esac\n",
            dir.display()
        );
        std::fs::write(dir.join("apt-get.sh"), script).unwrap();
        Installer {
            apt_get: vec![OsString::from("sh"), dir.join("apt-get.sh").into_os_string()],
            browser: dir.join("chromium"),
            lock: dir.join("install.lock"),
        }
    }

    fn log(dir: &Path) -> Vec<String> {
        let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
        log.lines()
            .map(|l| {
                l.split_whitespace().filter(|w| !w.starts_with('-') && !w.contains("::")).collect::<Vec<_>>().join(" ")
            })
            .collect()
    }

    #[test]
    fn test_processes_installing_at_once_install_once() {
        let dir = crate::TempDir::new("chromium-install");
        // Slow enough that, without the lock, the others would start their own install.
        let installer = installer(dir.path(), "sleep 0.3; touch chromium");
        let browsers: Vec<PathBuf> = std::thread::scope(|s| {
            let running: Vec<_> = (0..4).map(|_| s.spawn(|| installer.install())).collect();
            running.into_iter().map(|t| t.join().unwrap().unwrap()).collect()
        });
        assert!(browsers.iter().all(|b| *b == dir.path().join("chromium")));
        assert_eq!(log(dir.path()), ["noninteractive install chromium"], "one install");
    }

    #[test]
    fn a_stale_package_index_is_updated_once() {
        let dir = crate::TempDir::new("chromium-install");
        let installer = installer(dir.path(), "[ -f updated ] && touch chromium || exit 100");
        assert_eq!(installer.install().unwrap(), dir.path().join("chromium"));
        assert_eq!(
            log(dir.path()),
            ["noninteractive install chromium", "noninteractive update", "noninteractive install chromium"]
        );
    }

    #[test]
    fn a_failed_install_names_the_command_to_run() {
        let dir = crate::TempDir::new("chromium-install");
        let installer = installer(dir.path(), "echo 'E: Unable to locate package chromium' >&2; exit 100");
        let message = installer.install().unwrap_err();
        assert!(message.contains("Unable to locate package chromium"), "{message}");
        assert!(message.contains("\n    sudo apt-get install -y chromium\n"), "{message}");
    }
}
