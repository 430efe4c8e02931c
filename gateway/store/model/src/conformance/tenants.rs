//! Tenants, their limits and their SLOs.

use super::{actor, assert_audited, assert_conflict, assert_not_found, assert_recent, assert_unchanged, mark};
use crate::keys::generate;
use crate::{
    Backend, Limits, NewBinding, NewKey, NewTenant, Priority, Scope, Slo, TenantPatch, TenantStatus, UsageCounts,
    UsageKey, UsageQuery,
};

pub async fn tenants(store: &dyn Backend) {
    let a = "conf-tenant-a";
    let b = "conf-tenant-b";

    let m = mark(store).await;
    let new_a = NewTenant { name: a.into(), priority: Priority::High, status: TenantStatus::Active };
    let created = store.create_tenant(&actor(), &new_a).await.expect("create tenant");
    assert!(created.id > 0);
    assert_eq!(created.name, a);
    assert_eq!(created.priority, Priority::High);
    assert_eq!(created.status, TenantStatus::Active);
    assert_eq!(created.created_at, created.updated_at);
    assert_recent(created.created_at);
    assert_audited(store, &m, "tenant.create", a).await;

    let m = mark(store).await;
    assert_conflict(store.create_tenant(&actor(), &new_a).await, "duplicate tenant");
    assert_unchanged(store, &m, "duplicate tenant").await;

    let new_b = NewTenant { name: b.into(), priority: Priority::default(), status: TenantStatus::Suspended };
    let created_b = store.create_tenant(&actor(), &new_b).await.expect("create tenant b");
    assert_eq!((created_b.priority, created_b.status), (Priority::Normal, TenantStatus::Suspended));
    assert_ne!(created_b.id, created.id);

    let listed = store.list_tenants().await.expect("list tenants");
    super::assert_sorted_by_name(listed.iter().map(|t| t.name.as_str()), "tenants");
    assert!(listed.contains(&created), "{listed:?}");
    assert!(listed.contains(&created_b), "{listed:?}");

    let detail = store.get_tenant(a).await.expect("get tenant");
    assert_eq!(detail.tenant, created);
    assert_eq!(detail.limits, Limits::default(), "a new tenant is unlimited");
    assert!(detail.slos.is_empty());
    assert!(detail.keys.is_empty());
    assert_not_found(store.get_tenant("conf-tenant-missing").await, "get missing tenant");

    // Patches change only what they name.
    let m = mark(store).await;
    let patch = TenantPatch { status: Some(TenantStatus::Suspended), priority: None };
    let updated = store.update_tenant(&actor(), a, &patch).await.expect("update tenant");
    assert_eq!((updated.id, updated.name.as_str()), (created.id, a));
    assert_eq!((updated.status, updated.priority), (TenantStatus::Suspended, Priority::High));
    assert_eq!(updated.created_at, created.created_at);
    assert!(updated.updated_at >= created.updated_at);
    assert_audited(store, &m, "tenant.update", a).await;
    let patch = TenantPatch { status: None, priority: Some(Priority::Low) };
    let updated = store.update_tenant(&actor(), a, &patch).await.expect("update tenant");
    assert_eq!((updated.status, updated.priority), (TenantStatus::Suspended, Priority::Low));
    assert_eq!(store.get_tenant(a).await.expect("get").tenant, updated);
    let patch = TenantPatch { status: Some(TenantStatus::Active), priority: Some(Priority::High) };
    let updated = store.update_tenant(&actor(), a, &patch).await.expect("update tenant");
    assert_eq!((updated.status, updated.priority), (TenantStatus::Active, Priority::High));

    let m = mark(store).await;
    assert_not_found(store.update_tenant(&actor(), "conf-tenant-missing", &patch).await, "update missing");
    assert_not_found(store.delete_tenant(&actor(), "conf-tenant-missing").await, "delete missing");
    assert_unchanged(store, &m, "update/delete missing tenant").await;

    delete_cascades(store).await;
}

/// Deleting a tenant takes its keys, limits, SLOs and tenant-scoped bindings with it, and
/// leaves its usage, other tenants' bindings and global/model bindings alone.
async fn delete_cascades(store: &dyn Backend) {
    let doomed = "conf-tenant-doomed";
    let other = "conf-tenant-survivor";
    for name in [doomed, other] {
        let new = NewTenant { name: name.into(), priority: Priority::Normal, status: TenantStatus::Active };
        store.create_tenant(&actor(), &new).await.expect("create tenant");
    }
    let limits = Limits { requests_per_minute: Some(10), ..Limits::default() };
    store.set_limits(&actor(), doomed, &limits).await.expect("limits");
    let slo = Slo { model: "*".into(), ttft_p95_ms: Some(800), tpot_p95_ms: None, target_attainment: 0.9 };
    store.set_slos(&actor(), doomed, std::slice::from_ref(&slo)).await.expect("slos");
    let key = generate();
    let new_key = NewKey { name: Some("doomed".into()), prefix: key.prefix.clone(), digest: key.digest };
    store.create_key(&actor(), doomed, &new_key).await.expect("key");

    let upload = super::upload("conf-tenant-plugin", b"\0asm tenant cascade", serde_json::json!({}));
    store.add_plugin_version(&actor(), &upload).await.expect("upload plugin");
    let bind = |scope: Scope| async move {
        store.bind_plugin(&actor(), &NewBinding::new("conf-tenant-plugin", scope)).await.expect("bind")
    };
    let doomed_binding = bind(Scope::Tenant(doomed.into())).await;
    let other_binding = bind(Scope::Tenant(other.into())).await;
    let global_binding = bind(Scope::Global).await;
    // A model that happens to share the tenant's name is not the tenant.
    let model_binding = bind(Scope::Model(doomed.into())).await;

    let minute = 1_700_000_040;
    let usage_key = UsageKey { tenant: doomed.into(), model: "m".into(), minute };
    let counts = UsageCounts { requests: 3, ..UsageCounts::default() };
    store.add_usage(&[(usage_key.clone(), counts)]).await.expect("usage");

    let m = mark(store).await;
    store.delete_tenant(&actor(), doomed).await.expect("delete tenant");
    assert_audited(store, &m, "tenant.delete", doomed).await;

    assert_not_found(store.get_tenant(doomed).await, "deleted tenant");
    assert_not_found(store.list_keys(doomed).await, "keys of a deleted tenant");
    assert!(!store.list_tenants().await.expect("list").iter().any(|t| t.name == doomed));
    let bindings: Vec<i64> = store.list_bindings().await.expect("bindings").iter().map(|b| b.id).collect();
    assert!(!bindings.contains(&doomed_binding.id), "tenant-scoped binding survived its tenant");
    for kept in [&other_binding, &global_binding, &model_binding] {
        assert!(bindings.contains(&kept.id), "binding {kept:?} was deleted with another tenant");
    }
    let snapshot = store.snapshot().await.expect("snapshot");
    assert!(!snapshot.tenants.iter().any(|t| t.tenant.name == doomed));
    assert!(!snapshot.tenants.iter().flat_map(|t| &t.keys).any(|k| k.hash == key.digest));
    let query = UsageQuery { tenant: Some(doomed.into()), model: None, from: minute, to: minute + 60 };
    let usage = store.usage(&query).await.expect("usage");
    assert_eq!(usage.len(), 1, "usage rows outlive their tenant");
    assert_eq!(usage[0].counts.requests, 3);

    // A tenant created again under the name starts empty: nothing was left behind.
    let new = NewTenant { name: doomed.into(), priority: Priority::Normal, status: TenantStatus::Active };
    store.create_tenant(&actor(), &new).await.expect("re-create tenant");
    let detail = store.get_tenant(doomed).await.expect("get");
    assert_eq!(detail.limits, Limits::default());
    assert!(detail.slos.is_empty() && detail.keys.is_empty(), "{detail:?}");
    // The digest is free again: the old key row is gone, not just hidden.
    store.create_key(&actor(), doomed, &new_key).await.expect("same digest after cascade");
}

pub async fn limits_and_slos(store: &dyn Backend) {
    let t = "conf-limits";
    let new = NewTenant { name: t.into(), priority: Priority::Normal, status: TenantStatus::Active };
    store.create_tenant(&actor(), &new).await.expect("create tenant");

    let full = Limits {
        requests_per_minute: Some(600),
        tokens_per_minute: Some(100_000),
        max_concurrency: None,
        monthly_token_budget: Some(i64::MAX as u64),
        allowed_models: Some(vec!["meta-llama/Llama-3.1-8B-Instruct".into(), "qwen".into()]),
    };
    let m = mark(store).await;
    assert_eq!(store.set_limits(&actor(), t, &full).await.expect("set limits"), full);
    assert_audited(store, &m, "limits.set", t).await;
    assert_eq!(store.get_tenant(t).await.expect("get").limits, full);

    // PUT semantics: absent means unlimited, not "keep the old value".
    let partial = Limits { tokens_per_minute: Some(5), ..Limits::default() };
    assert_eq!(store.set_limits(&actor(), t, &partial).await.expect("set limits"), partial);
    assert_eq!(store.get_tenant(t).await.expect("get").limits, partial);

    // Zero is a limit, and an empty allow-list allows nothing: neither is "unlimited".
    let zero = Limits {
        requests_per_minute: Some(0),
        tokens_per_minute: Some(0),
        max_concurrency: Some(0),
        monthly_token_budget: Some(0),
        allowed_models: Some(vec![]),
    };
    store.set_limits(&actor(), t, &zero).await.expect("set limits");
    assert_eq!(store.get_tenant(t).await.expect("get").limits, zero);
    store.set_limits(&actor(), t, &Limits::default()).await.expect("clear limits");
    assert_eq!(store.get_tenant(t).await.expect("get").limits, Limits::default());

    let m = mark(store).await;
    assert_not_found(store.set_limits(&actor(), "conf-limits-missing", &full).await, "limits of missing tenant");
    assert_not_found(store.set_slos(&actor(), "conf-limits-missing", &[]).await, "SLOs of missing tenant");
    assert_unchanged(store, &m, "limits/SLOs of a missing tenant").await;

    let slo = |model: &str, ttft: Option<u32>, tpot: Option<u32>, target: f64| Slo {
        model: model.into(),
        ttft_p95_ms: ttft,
        tpot_p95_ms: tpot,
        target_attainment: target,
    };
    // Given out of order; stored and returned by model.
    let given =
        vec![slo("qwen", None, Some(40), 0.99), slo("*", Some(800), Some(60), 0.95), slo("llama", Some(1), None, 1.0)];
    let mut expected = given.clone();
    expected.sort_by(|x, y| x.model.cmp(&y.model));
    let m = mark(store).await;
    assert_eq!(store.set_slos(&actor(), t, &given).await.expect("set slos"), expected);
    assert_audited(store, &m, "slos.set", t).await;
    assert_eq!(store.get_tenant(t).await.expect("get").slos, expected);

    // The list replaces the old one entirely.
    let replacement = vec![slo("other", Some(250), None, 0.5)];
    assert_eq!(store.set_slos(&actor(), t, &replacement).await.expect("set slos"), replacement);
    assert_eq!(store.get_tenant(t).await.expect("get").slos, replacement);
    assert_eq!(store.set_slos(&actor(), t, &[]).await.expect("clear slos"), Vec::<Slo>::new());
    assert!(store.get_tenant(t).await.expect("get").slos.is_empty());
}
