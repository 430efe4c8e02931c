//! The capabilities served asynchronously (`http`, `embeddings`): the host's policy (grants,
//! allow-list, deadline) in front of the embedder's transport, and calls that wait without
//! blocking the executor thread.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{host, view};
use sluice_plugin_host::{
    BindingSpec, CallLimits, Capabilities, Capability, IoFuture, PluginError, PluginHost, PluginIo, PluginSource,
    RequestVerdict,
};

/// A transport that answers in-process: `send` waits for `release` (when set) and then echoes
/// the request line; `embed` returns a fixed vector. Requests are recorded.
#[derive(Debug, Default)]
struct LocalIo {
    seen: Mutex<Vec<String>>,
    release: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
    /// Never answers `send` (the host's deadline must end the wait).
    hang: bool,
}

impl PluginIo for LocalIo {
    fn send(
        &self,
        request: http::Request<Bytes>,
        timeout: Duration,
        _max_body: usize,
    ) -> IoFuture<http::Response<Bytes>> {
        let line = format!("{} {} x-from={:?}", request.method(), request.uri(), request.headers().get("x-from"));
        self.seen.lock().unwrap().push(line.clone());
        let release = self.release.lock().unwrap().take();
        let hang = self.hang;
        Box::pin(async move {
            let wait = async {
                if hang {
                    std::future::pending::<()>().await;
                }
                if let Some(release) = release {
                    let _ = release.await;
                }
            };
            tokio::time::timeout(timeout, wait).await.map_err(|_| format!("timed out after {timeout:?}"))?;
            Ok(http::Response::builder().status(201).body(Bytes::from(line)).unwrap())
        })
    }

    fn embed(&self, model: String, input: String, _timeout: Duration) -> IoFuture<Vec<f32>> {
        self.seen.lock().unwrap().push(format!("embed {model} {input}"));
        Box::pin(async move { Ok(vec![0.25, 0.5, 0.75]) })
    }
}

fn net_guest(config: serde_json::Value, allow: &[&str]) -> BindingSpec {
    BindingSpec {
        capabilities: Capabilities::none().with(Capability::Config).with(Capability::Http).with(Capability::Embeddings),
        config_json: config.to_string(),
        http_allow: allow.iter().map(|s| (*s).to_owned()).collect(),
        limits: CallLimits { timeout: Duration::from_millis(2_000), memory_bytes: 8 << 20 },
        ..BindingSpec::new("net", PluginSource::Bytes(Arc::from(sluice_plugin_host::testing::TEST_NET_GUEST)))
    }
}

/// The JSON the net guest answered with.
async fn answer(host: &PluginHost) -> serde_json::Value {
    match host.chain().on_request(&mut view("t")).await.unwrap() {
        RequestVerdict::Respond { response, .. } => serde_json::from_slice(&response.body).unwrap(),
        other => panic!("expected a local response, got {other:?}"),
    }
}

fn host_with(io: Arc<LocalIo>) -> PluginHost {
    let host = host();
    assert!(host.services().set_io(io));
    host
}

#[tokio::test]
async fn http_reaches_allowed_hosts_only() {
    let io = Arc::new(LocalIo::default());
    let host = host_with(Arc::clone(&io));
    let config = serde_json::json!({"mode": "http", "url": "http://api.example.com:8080/v1/x?q=1"});
    let binding = host.load_and_activate(net_guest(config.clone(), &["api.example.com:8080"])).unwrap();
    assert!(binding.version.calls_async, "a plugin importing http is called asynchronously");
    let reply = answer(&host).await;
    assert_eq!(reply["status"], 201, "{reply}");
    assert_eq!(reply["body"], r#"GET http://api.example.com:8080/v1/x?q=1 x-from=Some("net-guest")"#);

    host.load_and_activate(net_guest(config, &["api.example.com:9090"])).unwrap();
    let reply = answer(&host).await;
    let error = reply["error"].as_str().unwrap();
    assert!(error.contains("api.example.com:8080 is not in this binding's http_allow list"), "{error}");
    assert_eq!(io.seen.lock().unwrap().len(), 1, "a refused request never reaches the transport");
}

#[tokio::test]
async fn embeddings_come_from_the_transport() {
    let io = Arc::new(LocalIo::default());
    let host = host_with(Arc::clone(&io));
    host.load_and_activate(net_guest(serde_json::json!({"mode": "embed", "model": "bge"}), &[])).unwrap();
    let reply = answer(&host).await;
    assert_eq!(reply, serde_json::json!({"dims": 3, "first": 0.25}));
    assert_eq!(io.seen.lock().unwrap().as_slice(), ["embed bge hello there"]);
}

#[tokio::test]
async fn without_a_transport_the_plugin_is_told() {
    let host = host();
    host.load_and_activate(net_guest(serde_json::json!({"mode": "embed", "model": "bge"}), &[])).unwrap();
    let reply = answer(&host).await;
    assert_eq!(reply["error"], "network capabilities are not available in this host");
}

#[test]
fn a_bad_allow_list_entry_refuses_the_binding() {
    let host = host();
    let error = host.load(net_guest(serde_json::json!({}), &["http://api.example.com"])).unwrap_err();
    assert!(matches!(error, PluginError::InvalidBinding { .. }), "{error}");
    assert!(error.to_string().contains("without scheme or path"), "{error}");
}

/// On a single-threaded runtime, a plugin waiting on `http` must leave the thread to other
/// tasks: here the task that lets its request finish. Blocking would deadlock, so the runtime
/// runs on a thread of its own and the test waits for it with a generous bound.
#[test]
fn a_waiting_plugin_does_not_block_its_executor_thread() {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let outcome = runtime.block_on(async {
            let (release_tx, release_rx) = tokio::sync::oneshot::channel();
            let io = Arc::new(LocalIo { release: Mutex::new(Some(release_rx)), ..LocalIo::default() });
            let host = host_with(io);
            let config = serde_json::json!({"mode": "http", "url": "http://127.0.0.1:9/"});
            host.load_and_activate(net_guest(config, &["127.0.0.1"])).unwrap();
            let releaser = tokio::spawn(async move {
                // Runs only if the plugin's call yielded the thread.
                let _ = release_tx.send(());
            });
            let reply = answer(&host).await;
            releaser.await.unwrap();
            reply
        });
        let _ = done_tx.send(outcome);
    });
    let reply = done_rx.recv_timeout(Duration::from_secs(60)).expect("the plugin call blocked its executor thread");
    assert_eq!(reply["status"], 201, "{reply}");
}

#[tokio::test]
async fn a_call_waiting_past_its_deadline_ends() {
    let io = Arc::new(LocalIo { hang: true, ..LocalIo::default() });
    let host = host_with(io);
    let mut spec = net_guest(serde_json::json!({"mode": "http", "url": "http://127.0.0.1:9/"}), &["127.0.0.1:9"]);
    spec.limits.timeout = Duration::from_millis(50);
    host.load_and_activate(spec).unwrap();
    // The wait is cut at the binding's deadline; the plugin is then interrupted at its next
    // epoch check (or, had it returned at once, would have reported the error).
    match host.chain().on_request(&mut view("t")).await {
        Err(failure) => assert!(matches!(failure.0, PluginError::Timeout { .. }), "{}", failure.0),
        Ok(RequestVerdict::Respond { response, .. }) => {
            let reply: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
            assert!(reply["error"].as_str().unwrap().contains("timed out"), "{reply}");
        }
        Ok(other) => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn synchronous_plugins_stay_synchronous() {
    let host = host();
    let binding = host.load_and_activate(common::guest("g", "continue", "a")).unwrap();
    assert!(!binding.version.calls_async);
    assert!(!host.chain().waits(sluice_plugin_host::Hook::OnRequest));
    let decision = host.chain().on_request(&mut view("t")).await.unwrap();
    assert!(matches!(decision, RequestVerdict::Continue(_)), "{decision:?}");
}
