//! A child process that belongs to a test: killed when the test ends however it ends, with its
//! stderr in a log file and its stdout in memory, both shown when something goes wrong.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Proc {
    name: String,
    child: Child,
    log_path: PathBuf,
    stdout: Arc<Mutex<String>>,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Starts `cmd`; stderr goes to `<dir>/<name>.log`, stdout is collected line by line.
    pub fn spawn(name: &str, mut cmd: Command, dir: &Path) -> Proc {
        let log_path = dir.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).unwrap_or_else(|e| panic!("creating {}: {e}", log_path.display()));
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log).env("NO_COLOR", "1");
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("starting {name} ({cmd:?}): {e}"));
        let stdout = Arc::new(Mutex::new(String::new()));
        if let Some(pipe) = child.stdout.take() {
            let sink = Arc::clone(&stdout);
            // Ends by itself when the child exits and the pipe closes.
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    let mut out = sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    out.push_str(&line);
                    out.push('\n');
                }
            });
        }
        Proc { name: name.to_owned(), child, log_path, stdout, status: None }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `INT`, …) with kill(1): the workspace forbids `unsafe`,
    /// so no libc call.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("running kill: {e}"));
        assert!(status.success(), "kill -s {signal} {} failed: {status}", self.pid());
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().unwrap_or_else(|e| panic!("waiting for {}: {e}", self.name));
        }
        self.status
    }

    /// Waits up to `timeout` for the process to end.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until stdout contains `needle`; panics with the diagnostics if the process ends or
    /// the deadline passes first.
    pub async fn wait_stdout(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.stdout();
            if out.contains(needle) {
                return out;
            }
            if let Some(status) = self.exited() {
                // The reader thread may still hold the last lines.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let out = self.stdout();
                if out.contains(needle) {
                    return out;
                }
                panic!("{} exited ({status}) before printing {needle:?}\n{}", self.name, self.diagnostics());
            }
            assert!(
                Instant::now() < deadline,
                "{} did not print {needle:?} in time\n{}",
                self.name,
                self.diagnostics()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// True when the log says the process could not bind its port (someone took it between
    /// our probe and its bind).
    pub fn bind_failed(&self) -> bool {
        let log = self.stderr();
        log.contains("Address already in use") || log.contains("address in use")
    }

    /// The process's output, for failure messages.
    pub fn diagnostics(&self) -> String {
        format!(
            "----- {name} stderr ({path}) -----\n{err}\n----- {name} stdout -----\n{out}",
            name = self.name,
            path = self.log_path.display(),
            err = tail(&self.stderr(), 80),
            out = tail(&self.stdout(), 40),
        )
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Drop for Proc {
    fn drop(&mut self) {
        // No panics here: this also runs while a failed test unwinds.
        if self.status.is_none() && !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
