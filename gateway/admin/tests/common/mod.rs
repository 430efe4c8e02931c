//! Serving the admin router on 127.0.0.1:0 over a real store, and talking HTTP to it.

#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod scenarios;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use sluice_admin::{AdminState, PluginInspector};
use sluice_plugin_host::artifacts::ArtifactCache;
use sluice_plugin_host::{EngineSettings, PluginEngine};
use sluice_store_model::Backend;
use tokio::sync::Notify;

pub const TOKEN: &str = "test-admin-token-0123456789abcdef";

/// The real inspector, as the server wires it.
pub struct WasmtimeInspector {
    engine: PluginEngine,
}

impl WasmtimeInspector {
    pub fn new() -> Self {
        let settings = EngineSettings { max_instances: 8, ..EngineSettings::default() };
        WasmtimeInspector { engine: PluginEngine::new(settings).unwrap() }
    }
}

impl PluginInspector for WasmtimeInspector {
    fn inspect(&self, wasm: &[u8]) -> Result<Value, String> {
        sluice_plugin_host::inspect::inspect(&self.engine, &ArtifactCache::default(), "upload", wasm)
            .map(|m| m.to_json())
            .map_err(|e| e.to_string())
    }

    /// As the server wires it: the engine's own memory maximum.
    fn binding_maxima(&self) -> sluice_store_model::validate::BindingMaxima {
        sluice_store_model::validate::BindingMaxima {
            memory_bytes: self.engine.settings().max_memory_bytes as u64,
            ..Default::default()
        }
    }
}

pub struct Admin {
    pub url: String,
    pub store: Arc<dyn Backend>,
    pub changed: Arc<Notify>,
    client: Client<HttpConnector, Full<Bytes>>,
    token: Option<String>,
    server: tokio::task::JoinHandle<()>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// An admin API over a fresh SQLite file.
pub async fn sqlite(token: Option<&str>) -> Admin {
    let dir = tempfile::tempdir().unwrap();
    let store = sluice_store_sqlite::SqliteStore::open(&dir.path().join("sluice.db")).await.unwrap();
    store.migrate().await.unwrap();
    serve(Arc::new(store), token, Some(dir)).await
}

pub async fn serve(store: Arc<dyn Backend>, token: Option<&str>, dir: Option<tempfile::TempDir>) -> Admin {
    let changed = Arc::new(Notify::new());
    let state = AdminState {
        store: Arc::clone(&store),
        auth: Arc::new(sluice_admin::AdminAuth::new(token, sluice_admin::AuthSettings::default())),
        plugins: Arc::new(WasmtimeInspector::new()),
        changed: Arc::clone(&changed),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = sluice_admin::router(state);
    let server = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    Admin { url, store, changed, client, token: token.map(str::to_owned), server, _dir: dir }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// The `param` of an error body.
    pub fn param(&self) -> Option<&str> {
        self.body["error"]["param"].as_str()
    }

    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }
}

impl Admin {
    pub async fn send(&self, method: Method, path: &str, token: Option<&str>, body: Option<(&str, Bytes)>) -> Reply {
        let mut request = Request::builder().method(method).uri(format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some((content_type, bytes)) => {
                request = request.header(header::CONTENT_TYPE, content_type);
                Full::new(bytes)
            }
            None => Full::new(Bytes::new()),
        };
        let response = tokio::time::timeout(Duration::from_secs(60), self.client.request(request.body(body).unwrap()))
            .await
            .expect("admin API answered within 60 s")
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        Reply { status, headers, body, text }
    }

    /// With the configured token.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let body = body.map(|b| ("application/json", Bytes::from(b.to_string())));
        self.send(method, path, self.token.as_deref(), body).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, None).await
    }

    pub async fn upload(&self, plugin: &str, bytes: &[u8]) -> Reply {
        let path = format!("/admin/api/plugins/{plugin}/versions");
        self.send(Method::POST, &path, self.token.as_deref(), Some(("application/wasm", Bytes::copy_from_slice(bytes))))
            .await
    }

    /// Waits (bounded) for the change notification a mutation must have left.
    pub async fn expect_changed(&self) {
        tokio::time::timeout(Duration::from_secs(5), self.changed.notified())
            .await
            .expect("a mutation notifies `changed`");
    }

    /// The newest audit entries.
    pub async fn audit(&self, limit: u32) -> Vec<Value> {
        let reply = self.get(&format!("/admin/api/audit?limit={limit}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        reply.body.as_array().unwrap().clone()
    }
}

impl Admin {
    /// Whether a change notification is pending right now (consuming it).
    pub async fn take_changed(&self) -> bool {
        tokio::time::timeout(Duration::ZERO, self.changed.notified()).await.is_ok()
    }
}
