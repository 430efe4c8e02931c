//! Issue 22's findings, through the real `sluice` binary with `sluice-sim` workers as child
//! processes: one test per finding (and one for worker output that is not valid), each with a
//! well-behaved tenant, `bravo`, sending requests on its own key alongside the attack and
//! seeing no failure. What is asserted is what an operator or a client can observe: the
//! binary's sockets, its admin API, `/metrics`, its store (read back through a restarted
//! gateway where it matters), its log and its exit status.
//!
//! Every timeout is configured small and every wait is for a condition; the in-process tests
//! beside the code (`gateway/server/tests/*.rs`) pin the finer points of each mechanism.

mod admin_auth;
mod body_budget;
mod config_ownership;
mod connections;
mod descriptors;
mod shutdown;
mod slow_readers;
mod usage;
mod worker_output;

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};
use sluice_e2e::client::get;
use sluice_e2e::fleet::Gateway;
use sluice_e2e::metrics::sum;
use sluice_e2e::tenancy::{ADMIN_TOKEN, GoodTenant, Load, chat, key, wait_until};
use sluice_e2e::{API_KEY, MODEL, TENANT};

/// The well-behaved tenant of every test (the attacker, where there is one, is `acme`).
const GOOD: &str = "bravo";

/// How long a condition may take on a loaded 2-core CI machine; a healthy run needs far less.
const PATIENCE: Duration = Duration::from_secs(15);

/// A pool of the gateway's config file.
struct Pool<'a> {
    name: &'a str,
    models: &'a [&'a str],
    /// Base URLs, or inline tables (`{ url = "…", name = "…" }`) as written.
    endpoints: Vec<String>,
    /// Lines for its `[pools.upstream]` table and subtables, written after its endpoints.
    upstream: &'a str,
}

impl<'a> Pool<'a> {
    /// A pool serving [`MODEL`] from `urls`, with no upstream settings of its own.
    fn llama(urls: &[String]) -> Pool<'a> {
        Pool {
            name: "llama",
            models: &[MODEL],
            endpoints: urls.iter().map(|u| format!("\"{u}\"")).collect(),
            upstream: "",
        }
    }
}

/// A config: `server_extra` in `[server]`, the pools, tenant `acme` ([`API_KEY`]) and [`GOOD`],
/// the admin token, then `extra` verbatim (more tables).
fn gateway_toml(listen: SocketAddr, admin: SocketAddr, server_extra: &str, pools: &[Pool], extra: &str) -> String {
    let mut toml = format!(
        "[server]\nlisten = \"{listen}\"\nadmin_listen = \"{admin}\"\n{server_extra}\n\n\
         [admin]\ntoken = \"{ADMIN_TOKEN}\"\n\n"
    );
    for pool in pools {
        let models: Vec<String> = pool.models.iter().map(|m| format!("\"{m}\"")).collect();
        toml += &format!(
            "[[pools]]\nname = \"{}\"\nmodels = [{}]\nendpoints = [{}]\n{}\n\n",
            pool.name,
            models.join(", "),
            pool.endpoints.join(", "),
            pool.upstream
        );
    }
    toml += &format!(
        "[[tenants]]\nname = \"{TENANT}\"\napi_keys = [\"{API_KEY}\"]\n\n\
         [[tenants]]\nname = \"{GOOD}\"\napi_keys = [\"{}\"]\n\n{extra}",
        key(GOOD)
    );
    toml
}

/// The sum of a metric's matching samples on the gateway's `/metrics` (0 when it has none).
async fn metric(gw: &Gateway, name: &str, labels: &[(&str, &str)]) -> f64 {
    sum(&gw.metrics().await, name, labels).unwrap_or(0.0)
}

/// [`GOOD`]'s load on `gw`, once its first requests are through.
async fn good_alongside(gw: &Gateway, load: Load) -> GoodTenant {
    let good = GoodTenant::start_with(&gw.api(), GOOD, load);
    wait_until("the good tenant's first requests", PATIENCE, || async { good.ok() >= 3 }).await;
    good
}

/// Stops the good tenant's load and asserts it saw no failure; returns how many it sent.
async fn assert_good_unharmed(good: GoodTenant) -> u64 {
    let report = good.stop().await;
    assert!(
        report.failures.is_empty(),
        "the good tenant saw {} failures: {:?}",
        report.failures.len(),
        report.failures
    );
    assert!(report.ok > 0, "the good tenant got nothing through");
    report.ok
}

/// A streamed chat completion for [`MODEL`] of `max_tokens`.
fn chat_stream(max_tokens: u32) -> Value {
    let mut body = chat();
    body["stream"] = json!(true);
    body["max_tokens"] = json!(max_tokens);
    body
}

/// A chat completion request for `model` with a prompt of about `tokens` tokens as the
/// gateway estimates them (request bytes / 4).
fn long_request(model: &str, tokens: usize, stream: bool, max_tokens: u32) -> Value {
    let prompt = "lorem ipsum dolor sit amet ".repeat(tokens * 4 / 27);
    json!({"model": model, "stream": stream, "max_tokens": max_tokens,
           "messages": [{"role": "user", "content": prompt}]})
}

/// The gateway's prompt estimate for `body` as the test client sends it.
fn prompt_estimate(body: &Value) -> i64 {
    i64::try_from(body.to_string().len() / 4).unwrap()
}

/// Whether an SSE `data` payload carries a token.
fn is_token(data: &str) -> bool {
    serde_json::from_str::<Value>(data)
        .is_ok_and(|v| v["choices"][0]["delta"]["content"].as_str().is_some_and(|c| !c.is_empty()))
}

/// The usage totals of `tenant` (for `model`, or every model) over the last day, through the
/// admin API.
async fn usage_totals(gw: &Gateway, tenant: &str, model: Option<&str>) -> Value {
    let filter = model.map(|m| format!("?model={m}")).unwrap_or_default();
    let reply = get(&format!("{}/admin/api/tenants/{tenant}/usage{filter}", gw.admin_url()), Some(ADMIN_TOKEN)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()["totals"].clone()
}
