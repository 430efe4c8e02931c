//! Plugin versions (content-addressed bytes) and bindings.

use super::{actor, assert_audited, assert_conflict, assert_not_found, assert_recent, assert_unchanged, mark, upload};
use crate::{ActivePlugin, Backend, FailurePolicy, NewBinding, NewTenant, Priority, Scope, StoreError, TenantStatus};

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

pub async fn plugins(store: &dyn Backend) {
    let p = "conf-plugin";
    let target = format!("plugin/{p}");
    let manifest = serde_json::json!({"hooks": ["on-request"], "limits": {"fuel": 1_000_000, "memory_mb": 16}});
    let v1 = upload(p, b"\0asm version one", manifest.clone());

    let m = mark(store).await;
    let stored = store.add_plugin_version(&actor(), &v1).await.expect("upload");
    assert_audited(store, &m, "plugin.upload", &target).await;
    assert_eq!((stored.plugin.as_str(), stored.version), (p, 1), "versions count from 1");
    assert_eq!(stored.sha256, v1.sha256);
    assert_eq!(stored.size_bytes, i64::try_from(v1.bytes.len()).expect("len"));
    assert_eq!(stored.manifest, manifest);
    assert_eq!(stored.granted, None, "nothing is granted before the first activation");
    assert_recent(stored.created_at);

    let plugin =
        store.list_plugins().await.expect("list").into_iter().find(|x| x.name == p).expect("created on upload");
    assert_eq!(plugin.active_version, None, "nothing is active until activated");
    assert!(plugin.granted.is_empty(), "{plugin:?}");
    assert_recent(plugin.created_at);

    // The same bytes again are refused, naming the version that has them.
    let m = mark(store).await;
    let message = assert_conflict(store.add_plugin_version(&actor(), &v1).await, "same bytes");
    assert!(message.contains("version 1"), "the conflict must name the existing version: {message}");
    assert_unchanged(store, &m, "same bytes").await;

    // A megabyte of every byte value survives the round trip.
    let big: Vec<u8> = (0..1_048_576u32).map(|i| (i % 251) as u8).collect();
    let v2 = upload(p, &big, serde_json::json!({}));
    assert_eq!(store.add_plugin_version(&actor(), &v2).await.expect("upload v2").version, 2);
    let v3 = upload(p, b"\0asm version three", serde_json::json!({"v": 3}));
    assert_eq!(store.add_plugin_version(&actor(), &v3).await.expect("upload v3").version, 3);

    let versions = store.list_plugin_versions(p).await.expect("versions");
    let numbers: Vec<i32> = versions.iter().map(|v| v.version).collect();
    assert_eq!(numbers, [3, 2, 1], "versions are listed newest first");
    assert_eq!(versions[2], stored);
    assert_eq!(versions[1].size_bytes, 1_048_576);
    assert_not_found(store.list_plugin_versions("conf-plugin-missing").await, "versions of missing plugin");

    assert_eq!(store.plugin_bytes(&v1.sha256).await.expect("bytes v1"), v1.bytes);
    assert_eq!(store.plugin_bytes(&v2.sha256).await.expect("bytes v2"), big);
    assert_not_found(store.plugin_bytes(&"0".repeat(64)).await, "bytes of unknown sha256");

    // Identical bytes under another plugin are that plugin's own version 1.
    let other = upload("conf-plugin-other", &v1.bytes, serde_json::json!({}));
    let stored_other = store.add_plugin_version(&actor(), &other).await.expect("same bytes, other plugin");
    assert_eq!(stored_other.version, 1);
    assert_eq!(store.plugin_bytes(&v1.sha256).await.expect("bytes"), v1.bytes);

    let listed = store.list_plugins().await.expect("list");
    super::assert_sorted_by_name(listed.iter().map(|x| x.name.as_str()), "plugins");

    let m = mark(store).await;
    let v2_grants = names(&["log", "counters"]);
    let active = store.activate_plugin_version(&actor(), p, 2, &v2_grants).await.expect("activate");
    assert_audited(store, &m, "plugin.activate", &target).await;
    assert_eq!((active.name.as_str(), active.active_version, active.id), (p, Some(2), plugin.id));
    assert_eq!(active.granted, v2_grants, "activation returns the grants");
    assert_eq!(active.created_at, plugin.created_at);
    let snapshot = store.snapshot().await.expect("snapshot");
    let want = ActivePlugin { name: p.into(), version: 2, sha256: v2.sha256.clone(), granted: v2_grants.clone() };
    assert!(snapshot.plugins.contains(&want), "{:?}", snapshot.plugins);
    assert!(!snapshot.plugins.iter().any(|x| x.name == "conf-plugin-other"), "inactive plugins are not served");

    // Rolling back is activating an older version, with grants of its own; each version keeps
    // the grants it was last activated with.
    let v1_grants = names(&["log"]);
    store.activate_plugin_version(&actor(), p, 1, &v1_grants).await.expect("roll back");
    let listed = store.list_plugins().await.expect("list");
    let listed = listed.iter().find(|x| x.name == p).expect("listed");
    assert_eq!((listed.active_version, &listed.granted), (Some(1), &v1_grants));
    let snapshot = store.snapshot().await.expect("snapshot");
    let want = ActivePlugin { name: p.into(), version: 1, sha256: v1.sha256.clone(), granted: v1_grants.clone() };
    assert!(snapshot.plugins.contains(&want), "{:?}", snapshot.plugins);
    let versions = store.list_plugin_versions(p).await.expect("versions");
    let granted: Vec<(i32, Option<Vec<String>>)> = versions.iter().map(|v| (v.version, v.granted.clone())).collect();
    assert_eq!(granted, [(3, None), (2, Some(v2_grants.clone())), (1, Some(v1_grants))]);

    // Granting nothing is a grant of its own, distinct from never having been activated.
    store.activate_plugin_version(&actor(), p, 3, &[]).await.expect("activate with no grants");
    let versions = store.list_plugin_versions(p).await.expect("versions");
    assert_eq!(versions[0].granted, Some(Vec::new()));
    assert_eq!(versions[1].granted, Some(v2_grants), "activating v3 leaves v2's grants alone");

    let m = mark(store).await;
    assert_not_found(store.activate_plugin_version(&actor(), p, 9, &[]).await, "activate missing version");
    assert_not_found(store.activate_plugin_version(&actor(), p, 0, &[]).await, "activate version 0");
    assert_not_found(
        store.activate_plugin_version(&actor(), "conf-plugin-missing", 1, &[]).await,
        "activate missing plugin",
    );
    assert_unchanged(store, &m, "failed activation").await;
}

pub async fn bindings(store: &dyn Backend) {
    let p = "conf-bind";
    let t = "conf-bind-tenant";
    store.add_plugin_version(&actor(), &upload(p, b"\0asm binding", serde_json::json!({}))).await.expect("upload");
    let new = NewTenant { name: t.into(), priority: Priority::Normal, status: TenantStatus::Active };
    store.create_tenant(&actor(), &new).await.expect("tenant");

    let config = serde_json::json!({"rpm": 10, "nested": {"list": [1, "two", null]}});
    let bind = |scope: Scope, order: i32, failure_policy: FailurePolicy| NewBinding {
        order,
        failure_policy,
        ..NewBinding::new(p, scope)
    };
    let m = mark(store).await;
    let new = NewBinding {
        config: config.clone(),
        timeout_ms: Some(250),
        max_memory_bytes: Some(32 << 20),
        ..bind(Scope::Global, 10, FailurePolicy::Closed)
    };
    let global = store.bind_plugin(&actor(), &new).await.expect("bind");
    assert_audited(store, &m, "plugin.bind", &format!("binding/{}", global.id)).await;
    assert!(global.id > 0);
    assert_eq!((global.plugin.as_str(), &global.scope, global.order), (p, &Scope::Global, 10));
    assert_eq!((global.failure_policy, &global.config), (FailurePolicy::Closed, &config));
    assert_eq!((global.timeout_ms, global.max_memory_bytes), (Some(250), Some(32 << 20)), "limits round-trip");
    assert_recent(global.created_at);

    let empty = serde_json::json!({});
    let tenant =
        store.bind_plugin(&actor(), &bind(Scope::Tenant(t.into()), 5, FailurePolicy::Open)).await.expect("bind");
    assert_eq!((&tenant.scope, tenant.failure_policy), (&Scope::Tenant(t.into()), FailurePolicy::Open));
    assert_eq!((tenant.timeout_ms, tenant.max_memory_bytes, &tenant.config), (None, None, &empty), "unset: defaults");
    let model_scope = Scope::Model("meta-llama/Llama-3.1-8B-Instruct".into());
    let only_deadline = NewBinding { timeout_ms: Some(1000), ..bind(model_scope.clone(), 10, FailurePolicy::Open) };
    let model = store.bind_plugin(&actor(), &only_deadline).await.expect("bind");
    assert_eq!((model.timeout_ms, model.max_memory_bytes), (Some(1000), None));
    let negative = store.bind_plugin(&actor(), &bind(Scope::Global, -3, FailurePolicy::Open)).await.expect("bind");

    let mine = |all: Vec<crate::Binding>| all.into_iter().filter(|b| b.plugin == p).collect::<Vec<_>>();
    let listed = mine(store.list_bindings().await.expect("list"));
    assert_eq!(listed, vec![negative.clone(), tenant.clone(), global.clone(), model.clone()], "by order, then id");
    let all = store.list_bindings().await.expect("list");
    let keys: Vec<(i32, i64)> = all.iter().map(|b| (b.order, b.id)).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted, "every binding is listed by order, then id");
    assert_eq!(store.snapshot().await.expect("snapshot").bindings, all, "the snapshot carries every binding");

    let m = mark(store).await;
    let missing_tenant = Scope::Tenant("conf-bind-missing".into());
    assert_not_found(
        store.bind_plugin(&actor(), &bind(missing_tenant, 0, FailurePolicy::Open)).await,
        "bind to missing tenant",
    );
    assert_not_found(
        store.bind_plugin(&actor(), &NewBinding::new("conf-bind-missing", Scope::Global)).await,
        "bind missing plugin",
    );
    // A memory limit no store can hold is refused as invalid, naming the field.
    let huge = NewBinding { max_memory_bytes: Some(u64::MAX), ..bind(Scope::Global, 0, FailurePolicy::Open) };
    match store.bind_plugin(&actor(), &huge).await {
        Err(StoreError::Invalid { field: "max_memory_bytes", .. }) => {}
        other => panic!("a memory limit above i64::MAX: expected Invalid, got {other:?}"),
    }
    assert_unchanged(store, &m, "failed bindings").await;

    let m = mark(store).await;
    store.unbind_plugin(&actor(), model.id).await.expect("unbind");
    assert_audited(store, &m, "plugin.unbind", &format!("binding/{}", model.id)).await;
    let listed = mine(store.list_bindings().await.expect("list"));
    assert_eq!(listed, vec![negative, tenant, global]);
    let m = mark(store).await;
    assert_not_found(store.unbind_plugin(&actor(), model.id).await, "unbind twice");
    assert_unchanged(store, &m, "unbind twice").await;
}
