//! Figures for the record, printed with `--nocapture`: nothing here asserts on time.
//! `cargo test -p sluice-store-sqlite --release --test timings -- --nocapture`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr, reason = "test code that reports figures")]

use std::time::{Duration, Instant};

use sluice_store_model::keys::generate;
use sluice_store_model::{
    Actor, Backend, EngineFlavor, Limits, NewBinding, NewEndpoint, NewKey, NewPool, NewTenant, Priority, Scope,
    TenantStatus, UsageCounts, UsageKey,
};
use sluice_store_sqlite::SqliteStore;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::test]
async fn timings() {
    let dir = tempfile::tempdir().unwrap();

    let mut opens = Vec::new();
    for i in 0..5 {
        let path = dir.path().join(format!("open-{i}")).join("sluice.db");
        let started = Instant::now();
        let store = SqliteStore::open(&path).await.unwrap();
        store.migrate().await.unwrap();
        opens.push(started.elapsed());
        store.close().await;
    }

    let store = SqliteStore::open(&dir.path().join("sluice.db")).await.unwrap();
    store.migrate().await.unwrap();
    let admin = Actor::admin();
    for t in 0..10 {
        let name = format!("tenant-{t}");
        let new = NewTenant { name: name.clone(), priority: Priority::Normal, status: TenantStatus::Active };
        store.create_tenant(&admin, &new).await.unwrap();
        store.set_limits(&admin, &name, &Limits { requests_per_minute: Some(60), ..Limits::default() }).await.unwrap();
        for _ in 0..3 {
            let key = generate();
            store
                .create_key(&admin, &name, &NewKey { name: None, prefix: key.prefix, digest: key.digest })
                .await
                .unwrap();
        }
    }
    for p in 0..3 {
        let pool = format!("pool-{p}");
        store
            .create_pool(&admin, &NewPool { name: pool.clone(), models: vec![format!("model-{p}")], apis: None })
            .await
            .unwrap();
        for e in 0..4 {
            let endpoint = NewEndpoint {
                name: format!("w{e}"),
                url: format!("http://10.0.{p}.{e}:8000"),
                flavor: EngineFlavor::Vllm,
                weight: 1,
                http2: false,
            };
            store.add_endpoint(&admin, &pool, &endpoint).await.unwrap();
        }
    }
    let upload = sluice_store_model::NewPluginVersion {
        plugin: "quota".into(),
        bytes: vec![7; 64 * 1024],
        sha256: "cd".repeat(32),
        manifest: serde_json::json!({}),
    };
    store.add_plugin_version(&admin, &upload).await.unwrap();
    store.activate_plugin_version(&admin, "quota", 1, &[]).await.unwrap();
    store.bind_plugin(&admin, &NewBinding::new("quota", Scope::Global)).await.unwrap();

    let mut snapshots = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let snapshot = store.snapshot().await.unwrap();
        snapshots.push(started.elapsed());
        assert_eq!(snapshot.tenants.len(), 10);
    }

    let mut inserts = Vec::new();
    let mut upserts = Vec::new();
    for round in 0..5 {
        let minute = (30_000_000 + round) * 60;
        let batch: Vec<(UsageKey, UsageCounts)> = (0..1000)
            .map(|i| {
                let key = UsageKey { tenant: format!("tenant-{}", i % 10), model: format!("model-{}", i / 10), minute };
                (key, UsageCounts { requests: 1, prompt_tokens: 100, ..UsageCounts::default() })
            })
            .collect();
        let started = Instant::now();
        store.add_usage(&batch).await.unwrap();
        inserts.push(started.elapsed());
        let started = Instant::now();
        store.add_usage(&batch).await.unwrap();
        upserts.push(started.elapsed());
    }

    let mut polls = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        store.change_version().await.unwrap();
        polls.push(started.elapsed());
    }

    eprintln!("open + migrate a new file:        median {:?} of {opens:?}", median(opens.clone()));
    eprintln!("snapshot (10 tenants, 30 keys, 3 pools x 4 endpoints, 1 plugin): median {:?}", median(snapshots));
    eprintln!("add_usage 1,000 new rows:         median {:?} of {inserts:?}", median(inserts.clone()));
    eprintln!("add_usage 1,000 existing rows:    median {:?} of {upserts:?}", median(upserts.clone()));
    eprintln!("change_version (one poll):        median {:?}", median(polls));
}
