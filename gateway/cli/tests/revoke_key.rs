//! `sluice revoke-key` (the built binary) against the store a running gateway serves from, with
//! no admin API (the config sets no admin token): the gateway refuses the key within a second.
//! Before it, a restart with a key dropped from the config file: the key is refused and the
//! change logged. After it, a reload with the revoked key still in the file: it stays revoked,
//! with a warning.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use sluice_config::Config;
use sluice_server::{Running, Sluice};
use sluice_sim::{SimConfig, SimHandle, SimWorker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const KEEP: &str = "sk-keep-0123456789abcdefghijklmnop";
const DROP: &str = "sk-drop-0123456789abcdefghijklmnop";

/// Everything the process logs, for the lines the reconciliation writes.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = Arc::clone(&buffer);
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || Captured(Arc::clone(&writer)))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buffer
    })
}

struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap()).into_owned()
}

fn config_text(sim: &SimHandle, keys: &[&str]) -> String {
    let keys: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
    format!(
        "[[pools]]\nname = \"sim\"\nmodels = [\"llama-3-8b\"]\nendpoints = [\"{}\"]\n\n\
         [[tenants]]\nname = \"acme\"\napi_keys = [{}]\n",
        sim.base_url(),
        keys.join(", ")
    )
}

/// A gateway as `sluice serve --config <path> --data-dir <data>` builds it, on port 0.
async fn serve(path: &Path, data: &Path) -> Running {
    let config = Config::load(Some(path)).unwrap();
    let (store, _) = sluice_store::open(&config.database, data).await.unwrap();
    let sluice =
        Sluice::build_with_store(config, store, Vec::new(), None).await.unwrap().with_config_file(Some(path.into()));
    let listeners = (TcpListener::bind("127.0.0.1:0").await.unwrap(), TcpListener::bind("127.0.0.1:0").await.unwrap());
    sluice.start_on(listeners.0, listeners.1).unwrap()
}

/// One chat completion with `key`, over a connection of its own; the status code.
async fn status(running: &Running, key: &str) -> u16 {
    let addr = running.base_url().trim_start_matches("http://").to_owned();
    let body = r#"{"model":"llama-3-8b","messages":[{"role":"user","content":"hi"}],"max_tokens":2}"#;
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.unwrap();
    let head = String::from_utf8_lossy(&reply);
    head.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or_else(|| panic!("no status in {head}"))
}

fn sluice(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sluice")).args(args).env_remove("SLUICE_CONFIG").output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_revoked_from_the_command_line_and_by_leaving_the_file() {
    logs();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = SimWorker::start(SimConfig::default(), listener).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = (dir.path().join("sluice.toml"), dir.path().join("data"));
    std::fs::write(&path, config_text(&sim, &[KEEP, DROP])).unwrap();

    let running = serve(&path, &data).await;
    assert_eq!(status(&running, KEEP).await, 200);
    assert_eq!(status(&running, DROP).await, 200);
    running.shutdown().await;

    // Restarted with DROP gone from the file: refused, and the log says so.
    std::fs::write(&path, config_text(&sim, &[KEEP])).unwrap();
    let running = serve(&path, &data).await;
    assert_eq!(status(&running, DROP).await, 401);
    assert_eq!(status(&running, KEEP).await, 200);
    let expected = "config file: key sk-drop-012… of tenant \"acme\" revoked: no longer in the config file";
    assert!(logged().contains(expected), "{}", logged());

    // Mistakes are refused with a reason and change nothing.
    let (path_arg, data_arg) = (path.to_str().unwrap(), data.to_str().unwrap());
    let missing = sluice(&["revoke-key", "acme", "sk-nope", "--config", path_arg, "--data-dir", data_arg]);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("tenant \"acme\" has no key with id, prefix or name \"sk-nope\""), "{stderr}");
    let elsewhere = dir.path().join("elsewhere");
    let elsewhere = sluice(&["revoke-key", "acme", "sk-keep-012", "--data-dir", elsewhere.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&elsewhere.stderr).contains("no store at"), "{elsewhere:?}");
    assert_eq!(status(&running, KEEP).await, 200);

    // Revoked from the command line, straight in the store the gateway serves from.
    let revoked = sluice(&["revoke-key", "acme", "sk-keep-012", "--config", path_arg, "--data-dir", data_arg]);
    let stdout = String::from_utf8_lossy(&revoked.stdout);
    assert!(revoked.status.success(), "{revoked:?}");
    assert!(stdout.contains("sk-keep-012… (bootstrap) of tenant \"acme\" revoked"), "{stdout}");
    let started = Instant::now();
    while status(&running, KEEP).await != 401 {
        assert!(started.elapsed() < Duration::from_secs(5), "the gateway still accepts the revoked key");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("a key revoked from the command line was refused after {:?}", started.elapsed());
    let again = sluice(&["revoke-key", "acme", "sk-keep-012", "--config", path_arg, "--data-dir", data_arg]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("was already revoked"), "{again:?}");

    // The file still lists it: a reload keeps it revoked and says why.
    let report = running.reload().await.unwrap();
    let warning = "key sk-keep-012… of tenant \"acme\" is in the config file but was revoked; it stays revoked";
    assert!(report.applied.iter().any(|line| line.contains(warning)), "{:?}", report.applied);
    assert!(logged().contains(warning), "{}", logged());
    assert_eq!(status(&running, KEEP).await, 401);
    running.shutdown().await;
    sim.shutdown().await;
}
