//! `sluice demo`: the gateway, simulated GPU workers and a trickle of client traffic, all in
//! one process, so a newcomer sees Sluice work with one command and nothing installed.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use rand::Rng;
use serde_json::json;
use sluice_config::Config;
use sluice_server::Sluice;
use sluice_sim::{SimConfig, SimHandle, SimWorker};
use sluice_store::Backend;
use sluice_store::model::{Actor, Limits, Slo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::loadgen::{Connection, Target};
use crate::{DemoArgs, Traffic, private_files};

pub const MODEL: &str = "llama-3-8b";
const TENANTS: [&str; 2] = ["demo", "acme"];
/// The demo's keys and admin token, in the data directory.
const SECRETS_FILE: &str = "demo-secrets.json";

fn secret(prefix: &str) -> String {
    format!("{prefix}{:032x}", rand::rng().random::<u128>())
}

/// The demo's admin token and tenant keys, kept in the data directory so that a second run
/// reuses them instead of piling new keys into the store.
#[derive(serde::Serialize, serde::Deserialize)]
struct DemoSecrets {
    admin_token: String,
    keys: Vec<String>,
}

impl DemoSecrets {
    /// The file is kept readable by its owner only (see [`private_files`]), including one an
    /// earlier version wrote world-readable.
    fn load_or_create(data_dir: &std::path::Path) -> anyhow::Result<Self> {
        let path = data_dir.join(SECRETS_FILE);
        private_files::restrict(&path).with_context(|| format!("making {} private", path.display()))?;
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(secrets) = serde_json::from_str::<DemoSecrets>(&text)
            && secrets.keys.len() == TENANTS.len()
        {
            return Ok(secrets);
        }
        let secrets = DemoSecrets {
            admin_token: secret("sl-admin-"),
            keys: TENANTS.iter().map(|t| secret(&format!("sk-{t}-"))).collect(),
        };
        private_files::write(&path, &serde_json::to_vec_pretty(&secrets)?)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(secrets)
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.workers >= 1, "--workers must be at least 1");
    private_files::create_dir(&args.data_dir)
        .with_context(|| format!("creating the data directory {}", args.data_dir.display()))?;
    let secrets = DemoSecrets::load_or_create(&args.data_dir)?;
    let admin_token =
        std::env::var("SLUICE_ADMIN_TOKEN").ok().filter(|t| !t.is_empty()).unwrap_or(secrets.admin_token.clone());
    let keys = secrets.keys.clone();

    let mut workers: Vec<SimHandle> = Vec::with_capacity(args.workers);
    for i in 0..args.workers {
        let config = SimConfig { models: vec![MODEL.to_owned()], seed: i as u64 + 1, ..SimConfig::default() };
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        workers.push(SimWorker::start(config, listener).await.context("starting a simulated worker")?);
    }
    let endpoints: Vec<String> = workers
        .iter()
        .enumerate()
        .map(|(i, w)| format!("{{ url = \"{}\", name = \"sim-{i}\" }}", w.base_url()))
        .collect();
    let tenants: String = TENANTS
        .iter()
        .zip(&keys)
        .map(|(t, k)| format!("[[tenants]]\nname = \"{t}\"\napi_keys = [\"{k}\"]\n"))
        .collect();
    let toml = format!(
        "[server]\nlisten = \"{}\"\nadmin_listen = \"{}\"\nshutdown_grace = \"5s\"\n\
         [admin]\ntoken = \"{admin_token}\"\n\
         [upstream.health]\ninterval = \"2s\"\n\
         [[pools]]\nname = \"sim\"\nmodels = [\"{MODEL}\"]\nendpoints = [{}]\n\
         apis = [\"chat\", \"completions\", \"embeddings\", \"responses\", \"messages\"]\n{tenants}\
         [[plugins]]\nname = \"cache\"\nsource = \"builtin:cache\"\n",
        args.listen,
        args.admin_listen,
        endpoints.join(", "),
    );
    let config = Config::from_toml(&toml, &[], &|_| None)
        .context("invalid demo configuration (SLUICE_ADMIN_TOKEN, when set, is its admin token)")?;
    let store = crate::serve::open_store(&config, &args.data_dir).await?;
    let running = Sluice::build_with_store(config, Arc::clone(&store), Vec::new(), None).await?.start().await?;
    seed_slos(store.as_ref()).await?;
    seed_limits(store.as_ref()).await?;
    print_banner(&running.base_url(), &running.admin_url(), &keys[0], &admin_token, args.workers, args.traffic);

    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    if args.traffic == Traffic::On {
        for (i, key) in keys.iter().enumerate() {
            for lane in 0..2 {
                tasks.spawn(traffic(running.data_addr, key.clone(), i * 2 + lane, cancel.clone()));
            }
        }
    }
    crate::signal::shutdown().await;
    cancel.cancel();
    tasks.close();
    tasks.wait().await;
    running.shutdown().await;
    for w in workers {
        w.shutdown().await;
    }
    Ok(())
}

/// SLO targets for the demo tenants, so the live view's attainment panels have something to
/// measure: `demo` gets targets the simulated workers meet easily, `acme` tight ones they miss
/// now and then. Only set when a tenant has none, so edits made in the dashboard survive restarts.
async fn seed_slos(store: &dyn Backend) -> anyhow::Result<()> {
    let targets = [("demo", 250, 25, 0.95), ("acme", 60, 10, 0.99)];
    for (tenant, ttft, tpot, attainment) in targets {
        if !store.get_tenant(tenant).await?.slos.is_empty() {
            continue;
        }
        let slo = Slo {
            model: MODEL.to_owned(),
            ttft_p95_ms: Some(ttft),
            tpot_p95_ms: Some(tpot),
            target_attainment: attainment,
        };
        store.set_slos(&Actor::bootstrap(), tenant, &[slo]).await?;
    }
    Ok(())
}

/// A rate limit for `acme` a little below what the demo's clients send (two lanes of about one
/// request a second each), so that the live view shows the rate limiter refusing some with 429.
/// Only set when the tenant has no limits, so edits made in the dashboard survive restarts.
async fn seed_limits(store: &dyn Backend) -> anyhow::Result<()> {
    if store.get_tenant("acme").await?.limits != Limits::default() {
        return Ok(());
    }
    let limits = Limits { requests_per_minute: Some(90), max_concurrency: Some(4), ..Limits::default() };
    store.set_limits(&Actor::bootstrap(), "acme", &limits).await?;
    Ok(())
}

#[expect(clippy::print_stdout, reason = "the demo tells the user where to look")]
fn print_banner(api: &str, admin: &str, key: &str, token: &str, workers: usize, traffic: Traffic) {
    println!();
    println!("  Sluice demo is running ({workers} simulated GPU workers serving {MODEL})");
    println!();
    println!("  OpenAI API     {api}/v1");
    println!("  Dashboard      {admin}/  (log in with the admin token)");
    println!("  Admin API      {admin}/admin/api/  (OpenAPI: {admin}/admin/api/openapi.json)");
    println!("  Metrics        {admin}/metrics");
    println!("  Health         {api}/health  {admin}/healthz  {admin}/readyz");
    println!("  API key        {key}");
    println!("  Admin token    {token}");
    println!(
        "  Traffic        {}",
        if traffic == Traffic::On { "synthetic clients are sending requests (--traffic off to stop)" } else { "off" }
    );
    println!();
    println!("  Try it:");
    println!("    curl -N {api}/v1/chat/completions -H 'Authorization: Bearer {key}' \\");
    println!("      -H 'Content-Type: application/json' \\");
    println!(
        "      -d '{{\"model\":\"{MODEL}\",\"stream\":true,\"messages\":[{{\"role\":\"user\",\"content\":\"Hello!\"}}]}}'"
    );
    println!();
    println!("  Ctrl-C stops it.");
    println!();
}

/// A small shared-prefix workload: a few system prompts, several questions each, so that the
/// workers' prefix caches have something to reuse.
const SYSTEM_PROMPTS: [&str; 3] = [
    "You are a concise assistant for a hydrology lab. Answer in two sentences and cite the gauge station.",
    "You are a support agent for a GPU cloud. Be precise about quotas, regions and instance types.",
    "You are a code reviewer. Point out bugs first, style second, and keep every comment short.",
];
const QUESTIONS: [&str; 4] = [
    "What changed since yesterday?",
    "Summarise the last report in plain words.",
    "Which part is most likely to fail under load?",
    "Give me one thing to check first.",
];

/// A chat `body` told again in the Messages API (`messages_member = "messages"`, its system
/// prompt apart) or the Responses API (`"input"`, the system prompt as `instructions`).
fn agent_body(chat: &serde_json::Value, messages_member: &str, limit_member: &str) -> serde_json::Value {
    let system = chat["messages"][0]["content"].clone();
    let user = chat["messages"][1].clone();
    let system_member = if messages_member == "messages" { "system" } else { "instructions" };
    json!({
        "model": MODEL,
        "stream": chat["stream"],
        limit_member: chat["max_tokens"],
        system_member: system,
        messages_member: [user],
    })
}

async fn traffic(addr: std::net::SocketAddr, key: String, lane: usize, cancel: CancellationToken) {
    let mut connection = None;
    let mut n = lane;
    while !cancel.is_cancelled() {
        n += 1;
        let stream = !n.is_multiple_of(3);
        let mut body = json!({
            "model": MODEL,
            "stream": stream,
            "max_tokens": 32 + (n * 37) % 160,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPTS[n % SYSTEM_PROMPTS.len()]},
                {"role": "user", "content": QUESTIONS[(n / 3) % QUESTIONS.len()]},
            ],
        });
        // One request in four is deterministic, which the response cache answers once it has
        // seen the same question before (twelve of them): the live view shows hits and misses.
        if n.is_multiple_of(4) {
            body["temperature"] = json!(0);
            body["max_tokens"] = json!(64);
        }
        // Some agents' traffic too: a request in ten speaks Anthropic's Messages API, one OpenAI's
        // Responses API (the simulated workers serve both), so the dashboard shows each API.
        let (path, body) = match n % 10 {
            3 => ("/v1/messages", agent_body(&body, "messages", "max_tokens")),
            7 => ("/v1/responses", agent_body(&body, "input", "max_output_tokens")),
            _ => ("/v1/chat/completions", body),
        };
        let target = Target { addr, path, bearer: Some(key.clone()), body: Bytes::from(body.to_string()) };
        if connection.is_none() {
            connection = Connection::open(addr).await.ok();
        }
        if let (Some(c), Ok(request)) = (connection.as_mut(), target.encode()) {
            let call = tokio::select! {
                () = cancel.cancelled() => return,
                r = c.send(&request) => r,
            };
            if !call.is_ok_and(|exchange| exchange.reusable) {
                connection = None;
            }
        }
        let pause = Duration::from_millis(200 + rand::rng().random_range(0..800));
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}
