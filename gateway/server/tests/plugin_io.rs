//! The plugins' network capabilities through a running gateway: outbound HTTP to a real server
//! on the binding's allow-list, and embeddings from the pool serving the model (simulated
//! workers).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{Value, json};
use sluice_sim::{SimConfig, SimWorker};
use sluice_test_support::{GatewayOptions, MODEL, TestGateway, chat_body};
use tokio::net::TcpListener;

/// The net test guest on disk, written once per test process: the tests run in parallel, and
/// rewriting the file for each would let one gateway read it while another test had truncated it.
fn guest_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("sluice-e2e-plugin-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("net_guest.wasm");
        std::fs::write(&path, sluice_plugin_host::testing::TEST_NET_GUEST).unwrap();
        path
    })
}

/// A `[[plugins]]` entry binding the net test guest with `config` and `allow`.
fn binding(config: &str, allow: &str) -> String {
    let path = guest_path();
    format!(
        "[[plugins]]\nname = \"net\"\nsource = \"{}\"\ncapabilities = [\"config\", \"http\", \"embeddings\"]\n\
         http_allow = [{allow}]\ntimeout = \"5s\"\n[plugins.config]\n{config}\n",
        path.display()
    )
}

/// What the plugin answered a chat request with, through a gateway bound with `toml`.
async fn answer(toml: String) -> Value {
    let gw = TestGateway::start(1, GatewayOptions { extra_toml: toml, ..GatewayOptions::default() }).await;
    let reply = gw.chat(&chat_body("what is a sluice?", json!({"max_tokens": 3}))).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    gw.shutdown().await;
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_calls_an_allowed_host_and_only_that() {
    // Another simulated worker stands in for an external service the plugin consults.
    let service =
        SimWorker::start(SimConfig::default(), TcpListener::bind("127.0.0.1:0").await.unwrap()).await.unwrap();
    let addr = service.addr();
    let config = format!("mode = \"http\"\nurl = \"http://{addr}/v1/models\"");

    let reply = answer(binding(&config, &format!("\"{addr}\""))).await;
    assert_eq!(reply["status"], 200, "{reply}");
    let models: Value = serde_json::from_str(reply["body"].as_str().unwrap()).unwrap();
    assert_eq!(models["object"], "list", "{models}");

    let reply = answer(binding(&config, "\"127.0.0.1:1\"")).await;
    let error = reply["error"].as_str().unwrap();
    assert!(error.contains("is not in this binding's http_allow list"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_embeds_through_the_pool_serving_the_model() {
    let reply = answer(binding(&format!("mode = \"embed\"\nmodel = \"{MODEL}\""), "")).await;
    assert!(reply["dims"].as_u64().unwrap() > 0, "{reply}");
    assert!(reply["first"].is_number(), "{reply}");

    let reply = answer(binding("mode = \"embed\"\nmodel = \"no-such-model\"", "")).await;
    assert_eq!(reply["error"], "no pool serves model \"no-such-model\"");
}
