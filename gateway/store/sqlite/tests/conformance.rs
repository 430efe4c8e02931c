//! The conformance suite shared with the PostgreSQL store, each area on a fresh file.

mod common;

use sluice_store_model::conformance;

#[tokio::test]
async fn run_all() {
    let fresh = common::fresh().await;
    conformance::run_all(&fresh.store).await;
}

macro_rules! area {
    ($name:ident) => {
        #[tokio::test]
        async fn $name() {
            let fresh = common::fresh().await;
            conformance::$name(&fresh.store).await;
        }
    };
}

area!(tenants);
area!(limits_and_slos);
area!(keys);
area!(key_and_model_limits);
area!(pools);
area!(plugins);
area!(bindings);
area!(usage);
area!(tokens_by_tenant);
area!(audit);
area!(change_version);
area!(snapshot);
