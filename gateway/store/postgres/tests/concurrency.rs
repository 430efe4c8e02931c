//! Mutations from several replicas at once: versions stay unique and rise, plugin versions are
//! numbered without gaps or duplicates; and what reading a small store costs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test code; figures go to stderr"
)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sluice_store_model::keys::generate;
use sluice_store_model::{
    Actor, Backend, FailurePolicy, Limits, NewBinding, NewEndpoint, NewKey, NewPluginVersion, NewPool, NewTenant,
    Priority, Scope, Slo, TenantStatus,
};

fn upload(plugin: &str, bytes: Vec<u8>) -> NewPluginVersion {
    NewPluginVersion {
        plugin: plugin.into(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        bytes,
        manifest: serde_json::json!({}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_uploads_number_versions_one_after_another() {
    let db = common::TestDb::new().await;
    let a = db.store().await;
    let b = db.store().await;
    let tasks: Vec<_> = (0..12u8)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { store.add_plugin_version(&Actor::admin(), &upload("quota", vec![i; 64])).await })
        })
        .collect();
    let mut versions = BTreeSet::new();
    for task in tasks {
        versions.insert(task.await.unwrap().unwrap().version);
    }
    assert_eq!(versions, (1..=12).collect());
    assert_eq!(a.list_plugins().await.unwrap().len(), 1, "one plugin, created by whichever upload came first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_mutations_each_get_their_own_version() {
    let db = common::TestDb::new().await;
    let a = db.store().await;
    let b = db.store().await;
    let start = a.change_version().await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let new =
                    NewTenant { name: format!("t{i:02}"), priority: Priority::Normal, status: TenantStatus::Active };
                store.create_tenant(&Actor::admin(), &new).await.unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(a.change_version().await.unwrap(), start + 20);
    let audit = a.audit_log(&sluice_store_model::AuditQuery { limit: 100, before: None }).await.unwrap();
    assert_eq!(audit.len(), 20);
}

#[tokio::test]
async fn reading_a_small_store() {
    let db = common::TestDb::new().await;
    let store = db.store().await;
    let admin = Actor::admin();
    for t in 0..20 {
        let name = format!("tenant-{t:02}");
        let new = NewTenant { name: name.clone(), priority: Priority::Normal, status: TenantStatus::Active };
        store.create_tenant(&admin, &new).await.unwrap();
        store.set_limits(&admin, &name, &Limits { requests_per_minute: Some(600), ..Limits::default() }).await.unwrap();
        let slo = Slo { model: "*".into(), ttft_p95_ms: Some(500), tpot_p95_ms: None, target_attainment: 0.95 };
        store.set_slos(&admin, &name, &[slo]).await.unwrap();
        for _ in 0..3 {
            let key = generate();
            let new = NewKey { name: None, prefix: key.prefix, digest: key.digest };
            store.create_key(&admin, &name, &new).await.unwrap();
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
                flavor: Default::default(),
                weight: 1,
                http2: false,
            };
            store.add_endpoint(&admin, &pool, &endpoint).await.unwrap();
        }
    }
    store.add_plugin_version(&admin, &upload("quota", vec![7; 200_000])).await.unwrap();
    store.activate_plugin_version(&admin, "quota", 1, &["counters".to_owned()]).await.unwrap();
    for t in 0..5 {
        let scope = Scope::Tenant(format!("tenant-{t:02}"));
        let binding = NewBinding { order: t, failure_policy: FailurePolicy::Closed, ..NewBinding::new("quota", scope) };
        store.bind_plugin(&admin, &binding).await.unwrap();
    }

    let mut timings = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let snapshot = store.snapshot().await.unwrap();
        timings.push(started.elapsed());
        assert_eq!(snapshot.tenants.len(), 20);
        assert_eq!(snapshot.tenants.iter().map(|t| t.keys.len()).sum::<usize>(), 60);
    }
    timings.sort();
    eprintln!(
        "snapshot of 20 tenants / 60 keys / 3 pools of 4 endpoints / 1 plugin / 5 bindings: median {:?}, max {:?}",
        timings[timings.len() / 2],
        timings[timings.len() - 1]
    );
    assert!(timings[timings.len() / 2] < Duration::from_secs(1));
}
