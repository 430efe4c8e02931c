//! Limits narrower than the tenant: each API key's own, and each tenant × model pair's.

use super::{actor, assert_audited, assert_not_found, assert_unchanged, mark};
use crate::keys::generate;
use crate::{Backend, ModelLimits, NewKey, NewTenant, Priority, ScopeLimits, TenantStatus};

pub async fn key_and_model_limits(store: &dyn Backend) {
    let t = "conf-scope";
    let other = "conf-scope-other";
    for name in [t, other] {
        let new = NewTenant { name: name.into(), priority: Priority::Normal, status: TenantStatus::Active };
        store.create_tenant(&actor(), &new).await.expect("create tenant");
    }
    let generated = generate();
    let new = NewKey { name: Some("batch".into()), prefix: generated.prefix.clone(), digest: generated.digest };
    let key = store.create_key(&actor(), t, &new).await.expect("create key");
    assert!(key.limits.is_empty(), "a new key has no limits of its own");

    // A key's limits: replaced whole, shown with the key, carried by the snapshot.
    let limits = ScopeLimits {
        requests_per_minute: Some(60),
        tokens_per_minute: None,
        max_concurrency: Some(2),
        monthly_token_budget: Some(i64::MAX as u64),
    };
    let m = mark(store).await;
    let set = store.set_key_limits(&actor(), t, key.id, &limits).await.expect("set key limits");
    assert_eq!(set, crate::ApiKey { limits, ..key.clone() });
    assert_audited(store, &m, "key_limits.set", &format!("{t}/key/{}", key.id)).await;
    assert_eq!(store.list_keys(t).await.expect("list keys"), vec![set.clone()]);
    assert_eq!(store.get_tenant(t).await.expect("get").keys, vec![set.clone()]);
    let snapshot_key = |snapshot: &crate::StoreSnapshot| {
        let tenant = snapshot.tenants.iter().find(|s| s.tenant.name == t).expect("tenant in snapshot");
        tenant.keys.iter().find(|k| k.id == key.id).map(|k| k.limits)
    };
    assert_eq!(snapshot_key(&store.snapshot().await.expect("snapshot")), Some(limits));

    let only_tpm = ScopeLimits { tokens_per_minute: Some(5000), ..ScopeLimits::default() };
    let set = store.set_key_limits(&actor(), t, key.id, &only_tpm).await.expect("replace key limits");
    assert_eq!(set.limits, only_tpm, "PUT replaces all four");
    let cleared = store.set_key_limits(&actor(), t, key.id, &ScopeLimits::default()).await.expect("clear");
    assert!(cleared.limits.is_empty());
    assert_eq!(snapshot_key(&store.snapshot().await.expect("snapshot")), Some(ScopeLimits::default()));

    // A key is found only under its own tenant.
    let m = mark(store).await;
    assert_not_found(store.set_key_limits(&actor(), other, key.id, &limits).await, "key of another tenant");
    assert_not_found(store.set_key_limits(&actor(), t, key.id + 1_000_000, &limits).await, "missing key");
    assert_not_found(store.set_key_limits(&actor(), "conf-scope-missing", key.id, &limits).await, "missing tenant");
    assert_unchanged(store, &m, "failed key limits").await;

    // A tenant's limits per model: one entry per model, listed by name, replaced whole.
    let llama = ScopeLimits { tokens_per_minute: Some(1000), ..ScopeLimits::default() };
    let qwen = ScopeLimits { requests_per_minute: Some(10), max_concurrency: Some(0), ..ScopeLimits::default() };
    assert!(store.list_model_limits(t).await.expect("list").is_empty());
    let m = mark(store).await;
    let set = store.set_model_limits(&actor(), t, "meta-llama/Llama-3.1-8B", &llama).await.expect("set model limits");
    assert_eq!(set, ModelLimits { model: "meta-llama/Llama-3.1-8B".into(), limits: llama });
    assert_audited(store, &m, "model_limits.set", &format!("{t}/model/meta-llama/Llama-3.1-8B")).await;
    store.set_model_limits(&actor(), t, "Qwen", &qwen).await.expect("set model limits");
    let expected = vec![
        ModelLimits { model: "Qwen".into(), limits: qwen },
        ModelLimits { model: "meta-llama/Llama-3.1-8B".into(), limits: llama },
    ];
    assert_eq!(store.list_model_limits(t).await.expect("list"), expected, "by model name, byte order");
    assert_eq!(store.get_tenant(t).await.expect("get").model_limits, expected);
    assert!(store.list_model_limits(other).await.expect("list").is_empty());
    let snapshot = store.snapshot().await.expect("snapshot");
    let tenant = snapshot.tenants.iter().find(|s| s.tenant.name == t).expect("tenant in snapshot");
    assert_eq!(tenant.model_limits, expected);

    let replaced = ScopeLimits { monthly_token_budget: Some(1), ..ScopeLimits::default() };
    let set = store.set_model_limits(&actor(), t, "Qwen", &replaced).await.expect("replace");
    assert_eq!(set.limits, replaced, "PUT replaces all four");

    let m = mark(store).await;
    store.delete_model_limits(&actor(), t, "Qwen").await.expect("delete model limits");
    assert_audited(store, &m, "model_limits.delete", &format!("{t}/model/Qwen")).await;
    assert_eq!(store.list_model_limits(t).await.expect("list"), expected[1..].to_vec());

    let m = mark(store).await;
    assert_not_found(store.delete_model_limits(&actor(), t, "Qwen").await, "deleted twice");
    assert_not_found(store.set_model_limits(&actor(), "conf-scope-missing", "x", &llama).await, "missing tenant");
    assert_not_found(store.list_model_limits("conf-scope-missing").await, "list for a missing tenant");
    assert_unchanged(store, &m, "failed model limits").await;

    // Both go with their tenant.
    store.delete_tenant(&actor(), t).await.expect("delete tenant");
    let snapshot = store.snapshot().await.expect("snapshot");
    assert!(snapshot.tenants.iter().all(|s| s.tenant.name != t));
    let new = NewTenant { name: t.into(), priority: Priority::Normal, status: TenantStatus::Active };
    store.create_tenant(&actor(), &new).await.expect("create tenant again");
    assert!(store.list_model_limits(t).await.expect("list").is_empty(), "a new tenant of the same name starts clean");
}
