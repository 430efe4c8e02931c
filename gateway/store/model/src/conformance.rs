//! The behaviour every [`Backend`] must show, as async functions that panic on the first
//! difference. Both stores' test suites call them, which is what keeps PostgreSQL and SQLite
//! interchangeable behind the admin API and the gateway.
//!
//! Each area function works on any migrated store: it uses names of its own (`conf-<area>-…`)
//! and only looks at what it created, so the areas can share one store or each get a fresh one.
//! [`run_all`] migrates (a second time, proving it idempotent) and runs every area in turn.
//!
//! What the suite pins down beyond the trait's doc comments, so that both stores agree:
//!
//! | mutation | audit `action` | audit `target` |
//! | --- | --- | --- |
//! | create / update / delete tenant | `tenant.create` / `tenant.update` / `tenant.delete` | `acme` |
//! | set limits / set SLOs | `limits.set` / `slos.set` | `acme` |
//! | create / revoke key | `key.create` / `key.revoke` | `acme/key/12` |
//! | set a key's limits | `key_limits.set` | `acme/key/12` |
//! | set / delete a model's limits | `model_limits.set` / `model_limits.delete` | `acme/model/meta-llama/Llama-3.1-8B` |
//! | create / delete pool | `pool.create` / `pool.delete` | `pool/gpu-a` |
//! | add / drain / undrain / remove endpoint | `endpoint.add` / `endpoint.drain` / `endpoint.undrain` / `endpoint.remove` | `pool/gpu-a/endpoint/w1` |
//! | replace a pool's models / APIs | `pool.set_models` / `pool.set_apis` | `pool/gpu-a` |
//! | hand a tenant / key / pool / endpoint to the config file | `tenant.adopt` / `key.adopt` / `pool.adopt` / `endpoint.adopt` | as above |
//! | upload / activate plugin version | `plugin.upload` / `plugin.activate` | `plugin/quota` |
//! | bind / unbind plugin | `plugin.bind` / `plugin.unbind` | `binding/7` |
//!
//! - Every successful mutation appends exactly one audit row (detail: a JSON object) and raises
//!   the change version; a failed one (NotFound, Conflict, Invalid) leaves both untouched.
//!   Revoking an already revoked key returns it unchanged (whether that is audited is open).
//! - `add_usage` is not a configuration change: it neither audits nor raises the version (the
//!   gateway would otherwise reload its snapshot on every usage flush).
//! - `tokens_by_tenant` saturates a total at `i64::MAX` (PostgreSQL's `SUM` would go on in
//!   `numeric`, SQLite's would fail on overflow) and counts a negative total as 0.
//! - Lists by name are in byte order (`COLLATE "C"` in PostgreSQL); keys and plugin versions
//!   newest first; endpoints in the order they were added; SLOs and a tenant's model limits by
//!   model (byte order); bindings by order, then id.
//! - Binding to `Scope::Tenant(name)` needs that tenant to exist (NotFound otherwise); model
//!   scopes name any model.
//! - An endpoint weight above `i32::MAX` is `Invalid { field: "weight" }`.
//! - A pool's APIs read back without repeats in `PoolApi::ALL` order, and as
//!   `PoolApi::DEFAULT` for a pool created without any.
//! - Uploading bytes already stored for the same plugin is a Conflict whose message contains
//!   `version N`, N being the existing version.

#![expect(clippy::expect_used, clippy::panic, reason = "a test suite: a failure is a panic")]

mod changes;
mod keys;
mod ownership;
mod plugins;
mod pools;
mod scope_limits;
mod snapshot;
mod tenants;
mod usage;

use std::time::Duration;

use crate::{Actor, AuditQuery, Backend, StoreError, Timestamp};

pub use changes::{audit, change_version};
pub use keys::keys;
pub use ownership::ownership;
pub use plugins::{bindings, plugins};
pub use pools::pools;
pub use scope_limits::key_and_model_limits;
pub use snapshot::snapshot;
pub use tenants::{limits_and_slos, tenants};
pub use usage::{tokens_by_tenant, usage};

/// Every area in turn, after a second `migrate()` (stores are migrated when opened).
pub async fn run_all(store: &dyn Backend) {
    store.migrate().await.expect("migrate is idempotent");
    store.ping().await.expect("ping");
    tenants(store).await;
    limits_and_slos(store).await;
    keys(store).await;
    key_and_model_limits(store).await;
    pools(store).await;
    ownership(store).await;
    plugins(store).await;
    bindings(store).await;
    usage(store).await;
    tokens_by_tenant(store).await;
    audit(store).await;
    change_version(store).await;
    snapshot(store).await;
}

/// The actor every suite mutation is made as, so its audit rows are recognisable.
pub(crate) fn actor() -> Actor {
    Actor("conformance".into())
}

/// The change version and newest audit id before a mutation.
pub(crate) struct Mark {
    version: i64,
    audit_id: i64,
}

pub(crate) async fn mark(store: &dyn Backend) -> Mark {
    let version = store.change_version().await.expect("change_version");
    let newest = store.audit_log(&AuditQuery { limit: 1, before: None }).await.expect("audit_log");
    Mark { version, audit_id: newest.first().map_or(0, |e| e.id) }
}

/// Asserts that exactly one mutation happened since `mark`: one audit row by [`actor`] with
/// this action and target, and a higher change version.
pub(crate) async fn assert_audited(store: &dyn Backend, mark: &Mark, action: &str, target: &str) {
    let version = store.change_version().await.expect("change_version");
    assert!(version > mark.version, "{action} {target}: change version {version} did not rise above {}", mark.version);
    let entries = store.audit_log(&AuditQuery { limit: 10, before: None }).await.expect("audit_log");
    let new: Vec<_> = entries.iter().filter(|e| e.id > mark.audit_id).collect();
    assert_eq!(new.len(), 1, "{action} {target}: expected exactly one new audit row, got {new:?}");
    let entry = new[0];
    assert_eq!(entry.actor, actor().0, "{entry:?}");
    assert_eq!(entry.action, action, "{entry:?}");
    assert_eq!(entry.target, target, "{entry:?}");
    assert!(entry.detail.is_object(), "audit detail must be a JSON object: {entry:?}");
    assert_recent(entry.at);
}

/// Asserts that nothing was recorded since `mark` (a failed mutation rolls back whole).
pub(crate) async fn assert_unchanged(store: &dyn Backend, mark: &Mark, what: &str) {
    let now = self::mark(store).await;
    assert_eq!(now.version, mark.version, "{what}: a failed mutation raised the change version");
    assert_eq!(now.audit_id, mark.audit_id, "{what}: a failed mutation left an audit row");
}

pub(crate) fn assert_recent(at: Timestamp) {
    let now = Timestamp::now().unix_ms();
    let skew = 5 * 60 * 1000;
    assert!((now - skew..=now + skew).contains(&at.unix_ms()), "timestamp {at} is not close to now");
}

pub(crate) fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

pub(crate) fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) -> String {
    match result {
        Err(StoreError::Conflict(message)) => message,
        other => panic!("{what}: expected Conflict, got {other:?}"),
    }
}

pub(crate) fn assert_sorted_by_name<'a>(names: impl Iterator<Item = &'a str>, what: &str) {
    let names: Vec<&str> = names.collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "{what} must be listed by name in byte order");
}

/// Generous bounds for "promptly": SQLite polls, and CI machines are slow.
pub(crate) const PROMPTLY: Duration = Duration::from_secs(5);

/// An upload of these bytes, with their SHA-256 computed as the admin API does.
pub(crate) fn upload(plugin: &str, bytes: &[u8], manifest: serde_json::Value) -> crate::NewPluginVersion {
    use sha2::{Digest, Sha256};
    crate::NewPluginVersion {
        plugin: plugin.into(),
        bytes: bytes.to_vec(),
        sha256: hex::encode(Sha256::digest(bytes)),
        manifest,
    }
}
