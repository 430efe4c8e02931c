//! The shared suite every store must pass, on a fresh PostgreSQL database.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test code; figures go to stderr"
)]

mod common;

use std::time::Instant;

use sluice_store_model::conformance;

#[tokio::test]
async fn postgres_store_passes_the_conformance_suite() {
    let db = common::TestDb::new().await;
    let store = db.store().await;
    let started = Instant::now();
    conformance::run_all(&store).await;
    eprintln!("conformance suite on PostgreSQL: {:?}", started.elapsed());
}

/// Each area on a store of its own, so none of them leans on another's leftovers.
#[tokio::test]
async fn each_area_passes_on_an_empty_store() {
    macro_rules! alone {
        ($($area:ident),*) => {$(
            let db = common::TestDb::new().await;
            conformance::$area(&db.store().await).await;
        )*};
    }
    alone!(
        tenants,
        limits_and_slos,
        keys,
        key_and_model_limits,
        pools,
        plugins,
        bindings,
        usage,
        tokens_by_tenant,
        audit,
        change_version,
        snapshot
    );
}
