//! Each tenant's tokens this calendar month, as the store's usage rows count them, reach the
//! plugins (`usage.month_tokens` in the tenant's settings): at start, so that a restarted
//! gateway knows the month's usage at once; as usage is written; and across a database outage,
//! during which the last figures stay.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_store::Backend;
use sluice_store::model::{Timestamp, UsageCounts, UsageKey, UsageQuery};
use sluice_test_support::{
    GatewayOptions, Link, MODEL, TENANT, TestGateway, TestStore, chat_body, fresh_postgres, fresh_sqlite,
    wait_until_async,
};

/// Generous: the gateway flushes and refreshes every 100 ms, but CI machines are slow.
const WITHIN: Duration = Duration::from_secs(15);

/// What the plugins read as the tenant's tokens this month; `None` if the gateway has no figure.
fn month_tokens(gw: &TestGateway, tenant: &str) -> Option<u64> {
    let settings = gw.running.gateway().plugins.services().tenant(tenant)?;
    let settings: Value = serde_json::from_str(&settings).expect("tenant settings are JSON");
    settings["usage"]["month_tokens"].as_u64()
}

/// The current month's first second and the minute after now, as the gateway computes them.
fn this_month() -> (i64, i64) {
    let now = Timestamp::now();
    (now.month_start().unix_seconds(), now.unix_seconds() + 60)
}

/// Prompt + completion tokens the store holds for `tenant` this month, and the requests they
/// came from, from the raw per-minute rows (not the aggregate query the gateway uses).
async fn stored(store: &dyn Backend, tenant: &str) -> (u64, i64) {
    let (from, to) = this_month();
    let rows = store.usage(&UsageQuery { tenant: Some(tenant.into()), from, to, ..Default::default() }).await.unwrap();
    let tokens = rows.iter().map(|r| r.counts.prompt_tokens + r.counts.completion_tokens).sum::<i64>();
    (u64::try_from(tokens).unwrap(), rows.iter().map(|r| r.counts.requests).sum())
}

/// Sends `n` chats and returns the tokens their responses reported (prompt + completion;
/// cached tokens are part of the prompt's count).
async fn chats(gw: &TestGateway, n: usize, label: &str) -> u64 {
    let mut tokens = 0;
    for i in 0..n {
        let reply = gw.chat(&chat_body(&format!("{label} number {i}"), json!({"max_tokens": 3 + i}))).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let usage = &reply.json()["usage"];
        tokens += usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap();
    }
    tokens
}

/// Earlier usage of this month (and of the last one, which must not count) as a gateway that
/// ran before would have left it.
async fn seed(store: &dyn Backend) -> u64 {
    let (month_start, _) = this_month();
    let counts = |prompt: i64, cached: i64, completion: i64| UsageCounts {
        requests: 1,
        prompt_tokens: prompt,
        cached_tokens: cached,
        completion_tokens: completion,
        ..UsageCounts::default()
    };
    let key = |tenant: &str, minute: i64| UsageKey { tenant: tenant.into(), model: MODEL.into(), minute };
    store
        .add_usage(&[
            (key(TENANT, month_start), counts(1_000, 400, 234)),
            (key(TENANT, month_start - 60), counts(50_000, 0, 50_000)),
            (key("someone-else", month_start), counts(7, 0, 7)),
        ])
        .await
        .unwrap();
    1_234
}

/// Waits until the store has written `requests` requests for the tenant this month, then until
/// the plugins see exactly the tokens the store recorded; returns that figure.
async fn until_plugins_see_the_store(gw: &TestGateway, store: &dyn Backend, requests: i64) -> u64 {
    let written = wait_until_async(WITHIN, || async { stored(store, TENANT).await.1 == requests }).await;
    let (tokens, counted) = stored(store, TENANT).await;
    assert!(written, "the store counted {counted} of {requests} requests");
    let seen = wait_until_async(WITHIN, || async { month_tokens(gw, TENANT) == Some(tokens) }).await;
    assert!(seen, "plugins see {:?} month tokens; the store recorded {tokens}", month_tokens(gw, TENANT));
    tokens
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_see_the_months_tokens_the_store_recorded_from_the_start() {
    let (store, _dir) = fresh_sqlite().await;
    let (month, _) = this_month();
    let earlier = seed(&*store).await;
    let gw = TestGateway::start(1, GatewayOptions { store: Some(TestStore(Arc::clone(&store))), ..Default::default() })
        .await;

    // Known before the first request: read from the store before serving started.
    assert_eq!(month_tokens(&gw, TENANT), Some(earlier), "the month's earlier usage, not last month's");

    let sent = chats(&gw, 5, "first").await;
    let tokens = until_plugins_see_the_store(&gw, &*store, 1 + 5).await;
    assert_eq!(tokens, earlier + sent, "the store recorded what the responses reported");
    assert_eq!(
        store
            .tokens_by_tenant(month, this_month().1)
            .await
            .unwrap()
            .iter()
            .find(|t| t.tenant == TENANT)
            .unwrap()
            .tokens,
        tokens
    );
    gw.shutdown().await;

    // A restarted gateway knows the month's usage at once.
    let gw = TestGateway::start(1, GatewayOptions { store: Some(TestStore(Arc::clone(&store))), ..Default::default() })
        .await;
    if this_month().0 == month {
        assert_eq!(month_tokens(&gw, TENANT), Some(tokens), "a restart forgets nothing of the month");
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_keeps_the_last_figures_and_they_catch_up_after() {
    let db = fresh_postgres().await;
    let direct = db.connect().await; // migrates
    let earlier = seed(&*direct).await;
    let pg: std::net::SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let link = Link::start(pg).await;
    let store = sluice_store_postgres::PostgresStore::connect(&db.url_via(link.addr)).await.unwrap();
    let gw =
        TestGateway::start(1, GatewayOptions { store: Some(TestStore(Arc::new(store))), ..Default::default() }).await;
    assert_eq!(month_tokens(&gw, TENANT), Some(earlier));

    let mut sent = chats(&gw, 3, "before").await;
    let before = until_plugins_see_the_store(&gw, &*direct, 1 + 3).await;
    assert_eq!(before, earlier + sent);

    link.cut();
    let degraded = wait_until_async(WITHIN, || async {
        gw.client.get(&gw.admin_url("/readyz"), None).await.json()["status"] == "degraded"
    })
    .await;
    assert!(degraded, "/readyz reports the lost database");
    sent += chats(&gw, 3, "during").await;
    // The store cannot be read: the figures stay what they were rather than vanish.
    assert_eq!(month_tokens(&gw, TENANT), Some(before), "the last figures stay while the database is away");

    link.restore();
    let after = until_plugins_see_the_store(&gw, &*direct, 1 + 6).await;
    assert_eq!(after, earlier + sent, "the outage's usage was written and is counted");
    gw.shutdown().await;
}
