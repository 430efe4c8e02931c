//! The audit log and the change version that tells gateways to reload.

use std::time::{Duration, Instant};

use super::{PROMPTLY, actor, assert_recent, mark};
use crate::{Actor, AuditQuery, Backend, NewTenant, Priority, TenantPatch, TenantStatus};

pub async fn audit(store: &dyn Backend) {
    let names = ["conf-audit-1", "conf-audit-2", "conf-audit-3"];
    let someone = Actor("someone-else".into());
    for (i, name) in names.iter().enumerate() {
        let by = if i == 1 { &someone } else { &actor() };
        let new = NewTenant { name: (*name).into(), priority: Priority::Normal, status: TenantStatus::Active };
        store.create_tenant(by, &new).await.expect("create tenant");
    }

    let newest = store.audit_log(&AuditQuery { limit: 3, before: None }).await.expect("audit log");
    let seen: Vec<(&str, &str, &str)> =
        newest.iter().map(|e| (e.actor.as_str(), e.action.as_str(), e.target.as_str())).collect();
    assert_eq!(
        seen,
        [
            ("conformance", "tenant.create", "conf-audit-3"),
            ("someone-else", "tenant.create", "conf-audit-2"),
            ("conformance", "tenant.create", "conf-audit-1"),
        ],
        "newest first, with who did what to what"
    );
    assert!(newest.windows(2).all(|w| w[0].id > w[1].id && w[0].at >= w[1].at));
    for entry in &newest {
        assert_recent(entry.at);
        assert!(entry.detail.is_object());
    }

    // Paging backwards by id: `before` is exclusive and `limit` caps the page.
    let page = store.audit_log(&AuditQuery { limit: 2, before: Some(newest[0].id) }).await.expect("page");
    assert_eq!(page, newest[1..3]);
    let page = store.audit_log(&AuditQuery { limit: 1, before: Some(newest[1].id) }).await.expect("page");
    assert_eq!(page, newest[2..3]);
    let page = store.audit_log(&AuditQuery { limit: 0, before: None }).await.expect("page");
    assert!(page.is_empty(), "limit 0 is an empty page");
    let page = store.audit_log(&AuditQuery { limit: 10, before: Some(i64::MIN) }).await.expect("page");
    assert!(page.is_empty());

    // Walking the whole log page by page sees every entry once, in order.
    let mut walked = Vec::new();
    let mut before = None;
    loop {
        let page = store.audit_log(&AuditQuery { limit: 7, before }).await.expect("page");
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        walked.extend(page.iter().map(|e| e.id));
    }
    assert!(walked.windows(2).all(|w| w[0] > w[1]), "pages overlap or go out of order");
    assert_eq!(walked[..3], [newest[0].id, newest[1].id, newest[2].id]);
}

pub async fn change_version(store: &dyn Backend) {
    let t = "conf-changes";
    let new = NewTenant { name: t.into(), priority: Priority::Normal, status: TenantStatus::Active };
    let v0 = store.change_version().await.expect("version");
    assert!(v0 >= 1);
    store.create_tenant(&actor(), &new).await.expect("create tenant");
    let v1 = store.change_version().await.expect("version");
    assert!(v1 > v0);
    assert_eq!(store.snapshot().await.expect("snapshot").version, v1, "a snapshot reports the version it reflects");

    // Every mutation raises it, one after another.
    let mut last = v1;
    for status in [TenantStatus::Suspended, TenantStatus::Active, TenantStatus::Suspended] {
        let patch = TenantPatch { status: Some(status), priority: None };
        store.update_tenant(&actor(), t, &patch).await.expect("update");
        let now = store.change_version().await.expect("version");
        assert!(now > last, "version went from {last} to {now}");
        last = now;
    }

    // Nothing changes: wait_for_change sits out max_wait and returns the same version.
    let max_wait = Duration::from_millis(400);
    let started = Instant::now();
    let got = store.wait_for_change(last, max_wait).await.expect("wait");
    let waited = started.elapsed();
    assert_eq!(got, last);
    assert!(waited >= max_wait.mul_f32(0.9), "returned after {waited:?}, before max_wait {max_wait:?}");
    assert!(waited < max_wait + PROMPTLY, "returned after {waited:?}, long after max_wait {max_wait:?}");

    // Already behind: returns at once with the current version.
    let started = Instant::now();
    let got = store.wait_for_change(v0, Duration::from_secs(60)).await.expect("wait");
    assert_eq!(got, last);
    assert!(started.elapsed() < PROMPTLY, "a stale `seen` took {:?}", started.elapsed());

    // A change made while waiting ends the wait long before max_wait.
    let started = Instant::now();
    let change = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let patch = TenantPatch { status: Some(TenantStatus::Active), priority: None };
        store.update_tenant(&actor(), t, &patch).await.expect("update");
    };
    let (got, ()) = tokio::join!(store.wait_for_change(last, Duration::from_secs(60)), change);
    let got = got.expect("wait");
    assert!(got > last, "woke with {got}, not above {last}");
    assert!(started.elapsed() < PROMPTLY, "the change took {:?} to be noticed", started.elapsed());
    assert_eq!(got, store.change_version().await.expect("version"));

    // A failed mutation is not a change.
    let before = mark(store).await;
    let _ = store.create_tenant(&actor(), &new).await;
    let got = store.wait_for_change(before.version, Duration::from_millis(100)).await.expect("wait");
    assert_eq!(got, before.version);
}
