//! Flows through the API, run against each real store: every route's happy path, the field named
//! by each validation error, 409 on duplicates, 404 on missing things, and after every mutation an
//! audit entry by `admin` and a change notification.

mod plugins;
mod pools;
mod scope_limits;
mod tenants;
mod usage;

use http::StatusCode;
use serde_json::Value;

use super::Admin;
pub use plugins::plugins_and_bindings;
pub use pools::pools_and_endpoints;
pub use scope_limits::key_and_model_limits;
pub use tenants::tenants_keys_limits_slos;
pub use usage::usage_reports;

/// Follows the audit log: each mutation must add exactly one entry, by `admin`.
pub struct Audit {
    last_id: i64,
}

impl Audit {
    pub async fn start(admin: &Admin) -> Audit {
        let last_id = admin.audit(1).await.first().map_or(0, |e| e["id"].as_i64().unwrap());
        // Whatever happened before (setup) is not this flow's business.
        admin.take_changed().await;
        Audit { last_id }
    }

    /// The mutation just made left one audit entry whose action starts with `noun.` and woke the
    /// gateway's reload.
    pub async fn expect(&mut self, admin: &Admin, noun: &str) -> Value {
        let entries = admin.audit(20).await;
        let new: Vec<&Value> = entries.iter().filter(|e| e["id"].as_i64().unwrap() > self.last_id).collect();
        assert_eq!(new.len(), 1, "one audit entry per mutation, got {new:#?}");
        let entry = new[0].clone();
        assert_eq!(entry["actor"], "admin", "{entry}");
        let action = entry["action"].as_str().unwrap();
        assert!(action.starts_with(&format!("{noun}.")), "action {action:?} for a {noun} mutation");
        self.last_id = entry["id"].as_i64().unwrap();
        admin.expect_changed().await;
        entry
    }

    /// A refused request changed nothing.
    pub async fn expect_none(&self, admin: &Admin) {
        let newest = admin.audit(1).await.first().map_or(0, |e| e["id"].as_i64().unwrap());
        assert_eq!(newest, self.last_id, "a refused request must not be audited");
        assert!(!admin.take_changed().await, "a refused request must not notify a change");
    }
}

pub(super) fn assert_error(reply: &super::Reply, status: StatusCode, param: Option<&str>) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert!(reply.body["error"]["message"].is_string(), "{}", reply.text);
    assert!(reply.body["error"]["type"].is_string(), "{}", reply.text);
    assert_eq!(reply.param(), param, "{}", reply.text);
}
