//! The file itself: where it is created, what survives a restart, and what never reaches it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

mod common;

use sluice_store_model::keys::generate;
use sluice_store_model::{
    Actor, Backend, EngineFlavor, FailurePolicy, Limits, NewBinding, NewEndpoint, NewKey, NewPluginVersion, NewPool,
    NewTenant, Priority, Scope, Slo, StoreError, TenantStatus, UsageCounts, UsageKey, UsageQuery,
};
use sluice_store_sqlite::SqliteStore;

#[tokio::test]
async fn open_creates_missing_directories_and_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("a").join("b").join("sluice.db");
    let store = common::open(&path).await;
    assert!(path.is_file());
    store.ping().await.expect("ping");
    assert_eq!(store.kind(), sluice_store_model::BackendKind::Sqlite);
}

#[tokio::test]
async fn a_path_that_cannot_be_a_database_is_unavailable() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The path is a directory.
    match SqliteStore::open(dir.path()).await {
        Err(StoreError::Unavailable(message)) => assert!(message.contains("cannot open"), "{message}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // A parent that is a file.
    let file = dir.path().join("file");
    std::fs::write(&file, b"not a directory").expect("write");
    assert!(matches!(SqliteStore::open(&file.join("sluice.db")).await, Err(StoreError::Unavailable(_))));
}

#[tokio::test]
async fn reopening_the_file_keeps_everything() {
    let fresh = common::fresh().await;
    let store = &fresh.store;
    let admin = Actor::admin();
    let new = NewTenant { name: "acme".into(), priority: Priority::High, status: TenantStatus::Suspended };
    store.create_tenant(&admin, &new).await.unwrap();
    let limits = Limits { tokens_per_minute: Some(9), allowed_models: Some(vec!["m".into()]), ..Limits::default() };
    store.set_limits(&admin, "acme", &limits).await.unwrap();
    let slo = Slo { model: "m".into(), ttft_p95_ms: Some(300), tpot_p95_ms: None, target_attainment: 0.975 };
    store.set_slos(&admin, "acme", &[slo]).await.unwrap();
    let key = generate();
    store
        .create_key(&admin, "acme", &NewKey { name: Some("k".into()), prefix: key.prefix, digest: key.digest })
        .await
        .unwrap();
    store.create_pool(&admin, &NewPool { name: "gpu".into(), models: vec!["m".into()], apis: None }).await.unwrap();
    let endpoint = NewEndpoint {
        name: "w1".into(),
        url: "http://10.0.0.1:8000".into(),
        flavor: EngineFlavor::LlamaCpp,
        weight: 2,
        http2: true,
    };
    store.add_endpoint(&admin, "gpu", &endpoint).await.unwrap();
    let bytes = b"\0asm reopen".to_vec();
    let upload = NewPluginVersion {
        plugin: "quota".into(),
        bytes: bytes.clone(),
        sha256: "ab".repeat(32),
        manifest: serde_json::json!({"hooks": []}),
    };
    store.add_plugin_version(&admin, &upload).await.unwrap();
    store.activate_plugin_version(&admin, "quota", 1, &["log".to_owned()]).await.unwrap();
    let binding = NewBinding {
        order: 3,
        failure_policy: FailurePolicy::Closed,
        config: serde_json::json!({"x": 1}),
        timeout_ms: Some(40),
        max_memory_bytes: Some(8 << 20),
        ..NewBinding::new("quota", Scope::Tenant("acme".into()))
    };
    store.bind_plugin(&admin, &binding).await.unwrap();
    let usage = UsageKey { tenant: "acme".into(), model: "m".into(), minute: 600 };
    store
        .add_usage(&[(usage.clone(), UsageCounts { requests: 4, tpot_max_us: 7, ..UsageCounts::default() })])
        .await
        .unwrap();

    let before = store.snapshot().await.unwrap();
    let tenants_before = store.get_tenant("acme").await.unwrap();
    let audit_before = store.audit_log(&sluice_store_model::AuditQuery { limit: 100, before: None }).await.unwrap();
    store.close().await;

    let reopened = common::open(&fresh.path).await;
    assert_eq!(reopened.snapshot().await.unwrap(), before);
    assert_eq!(reopened.get_tenant("acme").await.unwrap(), tenants_before);
    assert_eq!(
        reopened.audit_log(&sluice_store_model::AuditQuery { limit: 100, before: None }).await.unwrap(),
        audit_before
    );
    assert_eq!(reopened.plugin_bytes(&upload.sha256).await.unwrap(), bytes);
    let rows = reopened.usage(&UsageQuery { tenant: None, model: None, from: 0, to: 6000 }).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].counts.requests, rows[0].counts.tpot_max_us), (4, 7));

    // Ids are never reused, even for rows deleted before the restart.
    let doomed = NewTenant { name: "doomed".into(), priority: Priority::Normal, status: TenantStatus::Active };
    let id = reopened.create_tenant(&admin, &doomed).await.unwrap().id;
    reopened.delete_tenant(&admin, "doomed").await.unwrap();
    reopened.close().await;
    let again = common::open(&fresh.path).await;
    assert!(again.create_tenant(&admin, &doomed).await.unwrap().id > id);
}

/// The secret is shown once and never stored: neither the database file nor its WAL contain
/// it, in full or past the display prefix; the api_keys row holds the prefix and the digest.
#[tokio::test]
async fn the_secret_key_never_reaches_the_file() {
    let fresh = common::fresh().await;
    let admin = Actor::admin();
    let new = NewTenant { name: "acme".into(), priority: Priority::Normal, status: TenantStatus::Active };
    fresh.store.create_tenant(&admin, &new).await.unwrap();
    let key = generate();
    let created = fresh
        .store
        .create_key(&admin, "acme", &NewKey { name: Some("ci".into()), prefix: key.prefix.clone(), digest: key.digest })
        .await
        .unwrap();

    let row = sqlx::query!("SELECT tenant_id, name, prefix, sha256, revoked_ms FROM api_keys WHERE id = ?", created.id)
        .fetch_one(fresh.store.pool())
        .await
        .unwrap();
    assert_eq!(row.prefix, key.prefix);
    assert_eq!(row.sha256, key.digest.0.to_vec());
    assert_eq!(row.name.as_deref(), Some("ci"));
    assert_eq!(row.revoked_ms, None);
    for text in [row.prefix.as_str(), row.name.as_deref().unwrap_or_default()] {
        assert!(!text.contains(&key.secret[key.prefix.len()..]));
    }

    let secret_tail = &key.secret.as_bytes()[key.prefix.len()..];
    let contains = |haystack: &[u8], needle: &[u8]| haystack.windows(needle.len()).any(|w| w == needle);
    let mut files = vec![fresh.path.clone()];
    let wal = fresh.path.with_extension("db-wal");
    if wal.exists() {
        files.push(wal);
    }
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        assert!(!contains(&bytes, key.secret.as_bytes()), "the secret is in {}", file.display());
        assert!(!contains(&bytes, secret_tail), "the secret past its prefix is in {}", file.display());
    }
    // The digest is there (the check would be vacuous if nothing had been written).
    let all: Vec<u8> = files.iter().flat_map(|f| std::fs::read(f).unwrap()).collect();
    assert!(contains(&all, &key.digest.0));
}
