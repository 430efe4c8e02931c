//! API keys: only a prefix and a digest are kept, listed newest first, revoked idempotently.

use super::{actor, assert_audited, assert_conflict, assert_not_found, assert_recent, assert_unchanged, mark};
use crate::keys::{display_prefix, generate};
use crate::{AuditQuery, Backend, NewKey, NewTenant, Priority, TenantStatus};

pub async fn keys(store: &dyn Backend) {
    let t = "conf-keys";
    let other = "conf-keys-other";
    for name in [t, other] {
        let new = NewTenant { name: name.into(), priority: Priority::Normal, status: TenantStatus::Active };
        store.create_tenant(&actor(), &new).await.expect("create tenant");
    }

    let first = generate();
    let new_first = NewKey { name: Some("ci".into()), prefix: first.prefix.clone(), digest: first.digest };
    let m = mark(store).await;
    let k1 = store.create_key(&actor(), t, &new_first).await.expect("create key");
    assert!(k1.id > 0);
    assert_eq!(k1.tenant, t);
    assert_eq!(k1.name.as_deref(), Some("ci"));
    assert_eq!(k1.prefix, first.prefix);
    assert_eq!(k1.revoked_at, None);
    assert_recent(k1.created_at);
    assert_audited(store, &m, "key.create", &format!("{t}/key/{}", k1.id)).await;

    // A bootstrap key from the config file: short, unnamed, shown by its display prefix.
    let bootstrap = "sk-demo-conformance";
    let new_second =
        NewKey { name: None, prefix: display_prefix(bootstrap), digest: crate::keys::KeyDigest::of(bootstrap) };
    let k2 = store.create_key(&actor(), t, &new_second).await.expect("create key");
    assert_eq!(k2.name, None);
    assert_eq!(k2.prefix, display_prefix(bootstrap));
    assert!(k2.id != k1.id);

    let listed = store.list_keys(t).await.expect("list keys");
    assert_eq!(listed, vec![k2.clone(), k1.clone()], "keys are listed newest first");
    assert_eq!(store.get_tenant(t).await.expect("get").keys, listed);
    assert!(store.list_keys(other).await.expect("list keys").is_empty());
    assert_not_found(store.list_keys("conf-keys-missing").await, "keys of a missing tenant");

    // The secret appears nowhere the store can show: not in the key, the tenant, or the audit log.
    let shown = [
        serde_json::to_string(&listed).expect("json"),
        serde_json::to_string(&store.get_tenant(t).await.expect("get")).expect("json"),
        serde_json::to_string(&store.audit_log(&AuditQuery { limit: 1000, before: None }).await.expect("audit"))
            .expect("json"),
    ];
    for text in &shown {
        assert!(!text.contains(&first.secret), "the secret leaked: {text}");
        assert!(!text.contains(&first.secret[first.prefix.len()..]), "the secret's tail leaked: {text}");
    }

    // The snapshot carries the digest, for the gateway to look presented keys up by.
    let snapshot = store.snapshot().await.expect("snapshot");
    let tenant = snapshot.tenants.iter().find(|s| s.tenant.name == t).expect("tenant in snapshot");
    let mut digests: Vec<_> = tenant.keys.iter().map(|k| (k.id, k.prefix.clone(), k.hash)).collect();
    digests.sort();
    assert_eq!(digests, vec![(k1.id, k1.prefix.clone(), first.digest), (k2.id, k2.prefix.clone(), new_second.digest)]);

    // Digests are unique across tenants; missing tenants are NotFound.
    let m = mark(store).await;
    assert_conflict(store.create_key(&actor(), other, &new_first).await, "duplicate digest");
    assert_not_found(store.create_key(&actor(), "conf-keys-missing", &new_first).await, "key for missing tenant");
    assert_unchanged(store, &m, "failed key creation").await;

    let m = mark(store).await;
    let revoked = store.revoke_key(&actor(), t, k1.id).await.expect("revoke");
    let revoked_at = revoked.revoked_at.expect("revoked_at is set");
    assert_recent(revoked_at);
    assert_eq!(revoked, crate::ApiKey { revoked_at: Some(revoked_at), ..k1.clone() });
    assert_audited(store, &m, "key.revoke", &format!("{t}/key/{}", k1.id)).await;

    // Idempotent: a second revoke returns the key unchanged.
    let again = store.revoke_key(&actor(), t, k1.id).await.expect("revoke again");
    assert_eq!(again, revoked);

    // Revoked keys stay listed (for the audit trail) but leave the snapshot.
    let listed = store.list_keys(t).await.expect("list keys");
    assert_eq!(listed, vec![k2.clone(), revoked.clone()]);
    let snapshot = store.snapshot().await.expect("snapshot");
    let tenant = snapshot.tenants.iter().find(|s| s.tenant.name == t).expect("tenant in snapshot");
    let ids: Vec<i64> = tenant.keys.iter().map(|k| k.id).collect();
    assert_eq!(ids, vec![k2.id], "a revoked key must not be in the snapshot");

    let m = mark(store).await;
    assert_not_found(store.revoke_key(&actor(), t, i64::MAX).await, "revoke unknown key");
    assert_not_found(store.revoke_key(&actor(), other, k2.id).await, "revoke another tenant's key");
    assert_not_found(store.revoke_key(&actor(), "conf-keys-missing", k2.id).await, "revoke for missing tenant");
    assert_unchanged(store, &m, "failed revocation").await;
    assert_eq!(store.list_keys(t).await.expect("list keys")[0].revoked_at, None, "k2 was not revoked");
}
