//! The snapshot the gateway serves from agrees with what the admin API reads.

use super::{actor, upload};
use crate::keys::generate;
use crate::{
    Backend, EngineFlavor, FailurePolicy, Limits, NewBinding, NewEndpoint, NewKey, NewPool, NewTenant, PoolApi,
    Priority, Scope, Slo, TenantStatus,
};

pub async fn snapshot(store: &dyn Backend) {
    let (live, suspended) = ("conf-snap-live", "conf-snap-suspended");
    for (name, status) in [(live, TenantStatus::Active), (suspended, TenantStatus::Suspended)] {
        let new = NewTenant { name: name.into(), priority: Priority::High, status };
        store.create_tenant(&actor(), &new).await.expect("tenant");
    }
    let limits =
        Limits { requests_per_minute: Some(60), allowed_models: Some(vec!["qwen".into()]), ..Limits::default() };
    store.set_limits(&actor(), live, &limits).await.expect("limits");
    let slo = Slo { model: "*".into(), ttft_p95_ms: Some(500), tpot_p95_ms: Some(50), target_attainment: 0.99 };
    store.set_slos(&actor(), live, &[slo]).await.expect("slos");
    let mut kept = Vec::new();
    for i in 0..3 {
        let key = generate();
        let new = NewKey { name: Some(format!("k{i}")), prefix: key.prefix.clone(), digest: key.digest };
        let created = store.create_key(&actor(), live, &new).await.expect("key");
        if i == 1 {
            store.revoke_key(&actor(), live, created.id).await.expect("revoke");
        } else {
            kept.push((created.id, key.digest));
        }
    }
    let suspended_key = generate();
    let new = NewKey { name: None, prefix: suspended_key.prefix.clone(), digest: suspended_key.digest };
    store.create_key(&actor(), suspended, &new).await.expect("key");

    let pool = NewPool {
        name: "conf-snap-pool".into(),
        models: vec!["qwen".into()],
        apis: Some(vec![PoolApi::Chat, PoolApi::Responses]),
    };
    store.create_pool(&actor(), &pool).await.expect("pool");
    let endpoint = NewEndpoint {
        name: "w1".into(),
        url: "http://127.0.0.1:9".into(),
        flavor: EngineFlavor::Vllm,
        weight: 1,
        http2: false,
    };
    store.add_endpoint(&actor(), "conf-snap-pool", &endpoint).await.expect("endpoint");
    store.set_endpoint_drained(&actor(), "conf-snap-pool", "w1", true).await.expect("drain");
    let wasm = upload("conf-snap-plugin", b"\0asm snapshot", serde_json::json!({}));
    store.add_plugin_version(&actor(), &wasm).await.expect("upload");
    store.activate_plugin_version(&actor(), "conf-snap-plugin", 1, &["log".to_owned()]).await.expect("activate");
    let scope = Scope::Tenant(live.into());
    let binding = NewBinding {
        order: 1,
        failure_policy: FailurePolicy::Closed,
        timeout_ms: Some(20),
        ..NewBinding::new("conf-snap-plugin", scope.clone())
    };
    store.bind_plugin(&actor(), &binding).await.expect("bind");

    let snap = store.snapshot().await.expect("snapshot");
    assert_eq!(snap.version, store.change_version().await.expect("version"));

    // Tenants: all of them, suspended ones too (the gateway answers their keys with 403).
    let names: Vec<&str> = snap.tenants.iter().map(|t| t.tenant.name.as_str()).collect();
    super::assert_sorted_by_name(names.iter().copied(), "snapshot tenants");
    let listed = store.list_tenants().await.expect("list");
    assert_eq!(snap.tenants.iter().map(|t| &t.tenant).collect::<Vec<_>>(), listed.iter().collect::<Vec<_>>());
    for tenant in &snap.tenants {
        let detail = store.get_tenant(&tenant.tenant.name).await.expect("get");
        assert_eq!(tenant.limits, detail.limits, "{}", tenant.tenant.name);
        assert_eq!(tenant.slos, detail.slos, "{}", tenant.tenant.name);
        let live_keys: Vec<i64> = detail.keys.iter().filter(|k| k.revoked_at.is_none()).map(|k| k.id).collect();
        let mut snap_keys: Vec<i64> = tenant.keys.iter().map(|k| k.id).collect();
        let mut live_sorted = live_keys.clone();
        snap_keys.sort_unstable();
        live_sorted.sort_unstable();
        assert_eq!(snap_keys, live_sorted, "{}: the snapshot has exactly the unrevoked keys", tenant.tenant.name);
    }
    let live_tenant = snap.tenants.iter().find(|t| t.tenant.name == live).expect("live tenant");
    let mut hashes: Vec<(i64, crate::keys::KeyDigest)> = live_tenant.keys.iter().map(|k| (k.id, k.hash)).collect();
    hashes.sort();
    assert_eq!(hashes, kept);
    assert_eq!(live_tenant.limits, limits);
    let suspended_tenant = snap.tenants.iter().find(|t| t.tenant.name == suspended).expect("suspended tenant");
    assert_eq!(suspended_tenant.tenant.status, TenantStatus::Suspended);
    assert_eq!(suspended_tenant.keys.len(), 1);
    assert_eq!(suspended_tenant.keys[0].hash, suspended_key.digest);

    assert_eq!(snap.pools, store.list_pools().await.expect("pools"), "drained endpoints included, as listed");
    let snap_pool = snap.pools.iter().find(|p| p.name == "conf-snap-pool").expect("pool");
    assert_eq!(snap_pool.apis, [PoolApi::Chat, PoolApi::Responses], "the gateway routes by the stored APIs");
    assert!(snap_pool.endpoints[0].drained);

    // Plugins: only active ones, by name, with the active version's digest.
    super::assert_sorted_by_name(snap.plugins.iter().map(|p| p.name.as_str()), "snapshot plugins");
    let active: Vec<(String, i32)> = store
        .list_plugins()
        .await
        .expect("plugins")
        .into_iter()
        .filter_map(|p| p.active_version.map(|v| (p.name, v)))
        .collect();
    let served: Vec<(String, i32)> = snap.plugins.iter().map(|p| (p.name.clone(), p.version)).collect();
    assert_eq!(served, active);
    for plugin in &snap.plugins {
        let versions = store.list_plugin_versions(&plugin.name).await.expect("versions");
        let version = versions.iter().find(|v| v.version == plugin.version).expect("active version exists");
        assert_eq!(version.sha256, plugin.sha256);
    }

    assert_eq!(snap.bindings, store.list_bindings().await.expect("bindings"));
    assert!(
        snap.bindings.iter().any(|b| b.plugin == "conf-snap-plugin" && b.scope == scope && b.timeout_ms == Some(20)),
        "the snapshot carries the binding with its limits"
    );
    let served = snap.plugins.iter().find(|p| p.name == "conf-snap-plugin").expect("active plugin served");
    assert_eq!(served.granted, ["log"], "the snapshot carries the active version's grants");

    // Nothing changed, so a second snapshot is the same.
    assert_eq!(store.snapshot().await.expect("snapshot"), snap);
}
