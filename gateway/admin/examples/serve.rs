//! Serves the admin API over a fresh SQLite store in a temporary directory, with the real plugin
//! inspector, for `schemathesis.sh`. Prints its base URL on the first line of stdout; the token
//! is `SLUICE_ADMIN_TOKEN`. Runs until killed.

#![allow(clippy::print_stdout, reason = "the URL is this program's output")]

use std::io::Write;
use std::sync::Arc;

use sluice_admin::{AdminAuth, AdminState, AuthSettings, PluginInspector};
use sluice_plugin_host::artifacts::ArtifactCache;
use sluice_plugin_host::{EngineSettings, PluginEngine};
use sluice_store_model::Backend;

struct Inspector(PluginEngine);

impl PluginInspector for Inspector {
    fn inspect(&self, wasm: &[u8]) -> Result<serde_json::Value, String> {
        sluice_plugin_host::inspect::inspect(&self.0, &ArtifactCache::default(), "upload", wasm)
            .map(|m| m.to_json())
            .map_err(|e| e.to_string())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = sluice_store_sqlite::SqliteStore::open(&dir.path().join("sluice.db")).await?;
    store.migrate().await?;
    let engine = PluginEngine::new(EngineSettings { max_instances: 4, ..EngineSettings::default() })?;
    let state = AdminState {
        store: Arc::new(store),
        // Schemathesis sends wrong tokens on purpose; a lockout would turn its later calls into 429s.
        auth: Arc::new(AdminAuth::new(
            std::env::var("SLUICE_ADMIN_TOKEN").ok().as_deref(),
            AuthSettings { max_failures: u32::MAX, ..AuthSettings::default() },
        )),
        plugins: Arc::new(Inspector(engine)),
        changed: Arc::new(tokio::sync::Notify::new()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mut out = std::io::stdout();
    writeln!(out, "http://{}", listener.local_addr()?)?;
    out.flush()?;
    axum::serve(listener, sluice_admin::router(state)).await?;
    Ok(())
}
