//! What a created key leaves in the database: a prefix and a digest, and the secret nowhere.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test code; figures go to stderr"
)]

mod common;

use sluice_store_model::keys::generate;
use sluice_store_model::{Actor, Backend, NewKey, NewTenant, Priority, TenantStatus};

#[tokio::test]
async fn no_row_anywhere_contains_the_secret() {
    let db = common::TestDb::new().await;
    let store = db.store().await;
    let new = NewTenant { name: "acme".into(), priority: Priority::Normal, status: TenantStatus::Active };
    store.create_tenant(&Actor::admin(), &new).await.unwrap();
    let key = generate();
    let new_key = NewKey { name: Some("ci".into()), prefix: key.prefix.clone(), digest: key.digest };
    let created = store.create_key(&Actor::admin(), "acme", &new_key).await.unwrap();
    store.revoke_key(&Actor::admin(), "acme", created.id).await.unwrap();

    let mut conn = db.conn().await;
    let (prefix, sha256): (String, Vec<u8>) = sqlx::query_as("SELECT prefix, sha256 FROM api_keys WHERE id = $1")
        .bind(created.id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(prefix, key.prefix);
    assert_eq!(prefix.len(), 11, "sk- and 8 characters");
    assert_eq!(sha256, key.digest.0);

    // Every row of every table, as JSON text: neither the secret nor its unshown tail is there.
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert!(tables.contains(&"api_keys".to_owned()) && tables.contains(&"audit_log".to_owned()));
    let tail = &key.secret[key.prefix.len()..];
    let mut rows_seen = 0;
    for table in &tables {
        // Table names come from the catalogue, quoted as identifiers.
        let sql = format!("SELECT row_to_json(t)::text FROM public.\"{table}\" t");
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_all(&mut conn).await.unwrap();
        for row in rows {
            rows_seen += 1;
            assert!(!row.contains(&key.secret), "{table} holds the secret: {row}");
            assert!(!row.contains(tail), "{table} holds the secret's tail: {row}");
        }
    }
    assert!(rows_seen >= 5, "tenant, key, audit rows and the version row were looked at");
}
