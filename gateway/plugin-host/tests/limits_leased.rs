//! Leased quota on a real Redis at 127.0.0.1:6379: replicas (several `Shared` backends) never
//! admit more than a limit between them, and under-admit by at most replicas × two slices;
//! idle leases go back, so Redis ends at the exact value; slots of a replica that died lapse;
//! a lease never serves another window; a lease held when Redis goes away is used first.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::time::Duration;

use proptest::prelude::*;
use sluice_plugin_host::limits::Shared;
use sluice_plugin_host::limits::lease::slice_cap;
use sluice_plugin_host::limits::{Ask, Ending, Grant, Kind, OnSettle, validate};
use sluice_plugin_host::{Fallback, LeaseSettings, SharedMode, SharedSettings};

const REDIS: &str = "redis://127.0.0.1:6379";
/// A window no test run crosses (about 35 years).
const FOREVER_MS: u64 = 1 << 40;

fn settings(prefix: &str, lease: LeaseSettings) -> SharedSettings {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    SharedSettings {
        url: REDIS.to_owned(),
        timeout: Duration::from_secs(2),
        fallback: Fallback::Closed,
        // A fresh prefix per test and case: no run counts another's units.
        key_prefix: format!("sluice-test:lease:{prefix}:{}:{nanos}:", std::process::id()),
        mode: SharedMode::Leased(lease),
    }
}

fn ask(kind: Kind, amount: u64, limit: u64, period_ms: u64) -> Ask {
    let owner = "9:plugin:t/acme/";
    let on_settle = if kind == Kind::Slots { OnSettle::GiveBack } else { OnSettle::Tokens };
    Ask { key: format!("{owner}k"), owner_len: owner.len(), kind, amount, limit, period_ms, burst: limit, on_settle }
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

async fn redis_value(key: &str) -> i64 {
    let client = redis::Client::open(REDIS).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("GET").arg(key).query_async::<Option<i64>>(&mut c).await.unwrap().unwrap_or(0)
}

async fn redis_members(key: &str) -> usize {
    let client = redis::Client::open(REDIS).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    redis::cmd("ZCOUNT").arg(key).arg(now_ms).arg("+inf").query_async::<usize>(&mut c).await.unwrap()
}

async fn take(shared: &Shared, a: &Ask) -> Option<Grant> {
    validate(std::slice::from_ref(a)).unwrap();
    let grant = shared.acquire(std::slice::from_ref(a), Duration::from_secs(2)).await.unwrap();
    assert!(!shared.degraded(), "Redis answered");
    grant.decision.granted.then_some(grant)
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: not within 3 s");
}

#[derive(Debug, Clone)]
enum Op {
    Acquire { replica: usize, amount: u64 },
    Settle { which: usize, actual: u64 },
    Release { which: usize },
    Idle,
}

fn op(replicas: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..replicas, 1u64..40).prop_map(|(replica, amount)| Op::Acquire { replica, amount }),
        2 => (0usize..16, 0u64..60).prop_map(|(which, actual)| Op::Settle { which, actual }),
        1 => (0usize..16).prop_map(|which| Op::Release { which }),
        1 => Just(Op::Idle),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Replicas sharing a token window, under any interleaving of acquire, settle (under or
    /// over the reservation), release and idle returns: what is in use never exceeds the limit;
    /// a refusal happens only when what is in use plus the amount is within the replicas'
    /// leases of the limit; once everything is ended and the leases are back, Redis holds
    /// exactly what was used.
    #[test]
    fn replicas_never_admit_more_than_the_limit(
        replicas in 2usize..4,
        limit in 400u64..4_000,
        ops in proptest::collection::vec(op(4), 1..80),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            // Idle returns are driven by the test (`Op::Idle`), not by the clock.
            let lease = LeaseSettings { idle: Duration::from_secs(3600), slot_ttl: Duration::from_secs(10) };
            let settings = settings("prop", lease);
            let shared: Vec<Shared> = (0..replicas).map(|_| Shared::new(settings.clone(), None)).collect();
            let base = ask(Kind::Window, 1, limit, FOREVER_MS);
            let key = shared[0].redis_key(&base, wall_ms());
            let cap = slice_cap(&base);
            let mut open: Vec<(Grant, usize)> = Vec::new();
            // Units in use: open reservations and what settled holds used; and what holds used
            // beyond their reservations, which is charged whatever the limit says.
            let mut used = 0u64;
            let mut overruns = 0u64;
            for op in ops {
                match op {
                    Op::Acquire { replica, amount } => {
                        let replica = replica % replicas;
                        let a = Ask { amount, ..base.clone() };
                        match take(&shared[replica], &a).await {
                            Some(g) => {
                                used += amount;
                                open.push((g, replica));
                            }
                            None => {
                                // Refused only if the units the others' leases hold (two
                                // slices each at most) would not have been enough.
                                let slack = (replicas as u64) * 2 * cap;
                                prop_assert!(used + amount + slack > limit,
                                    "refused {} with {} of {} in use (slack {})", amount, used, limit, slack);
                            }
                        }
                    }
                    Op::Settle { which, actual } if which < open.len() => {
                        let (g, r) = open.remove(which);
                        shared[r].end(&g.taken, Ending::Settle(actual)).await;
                        used = used - g.taken[0].amount + actual;
                        overruns += actual.saturating_sub(g.taken[0].amount);
                    }
                    Op::Release { which } if which < open.len() => {
                        let (g, r) = open.remove(which);
                        shared[r].end(&g.taken, Ending::Release).await;
                        used -= g.taken[0].amount;
                    }
                    Op::Idle => {
                        for s in &shared {
                            s.return_leases().await;
                        }
                    }
                    _ => {}
                }
                // Never more than the limit taken, except what holds used beyond their
                // reservations (charged whatever the limit says).
                let in_redis = redis_value(&key).await as u64;
                let free: u64 = shared.iter().map(|s| s.leased_free(&key)).sum();
                prop_assert!(in_redis <= limit + overruns, "{} in Redis over {} + {}", in_redis, limit, overruns);
                prop_assert_eq!(in_redis, used + free, "Redis holds what is used and what leases hold");
            }
            for (g, r) in open.drain(..) {
                shared[r].end(&g.taken, Ending::Release).await;
                used -= g.taken[0].amount;
            }
            for s in &shared {
                s.return_leases().await;
            }
            prop_assert_eq!(redis_value(&key).await as u64, used, "back to the exact value");
            Ok(())
        })?;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_lease_goes_back_to_redis() {
    let lease = LeaseSettings { idle: Duration::from_millis(100), slot_ttl: Duration::from_secs(10) };
    let shared = Shared::new(settings("idle", lease), None);
    let a = ask(Kind::Window, 1, 16_000, FOREVER_MS);
    let key = shared.redis_key(&a, wall_ms());
    let mut holds = Vec::new();
    for _ in 0..20 {
        holds.push(take(&shared, &a).await.unwrap());
    }
    assert!(shared.leased_free(&key) > 0, "slices grew with use");
    assert_eq!(redis_value(&key).await as u64, 20 + shared.leased_free(&key));
    for g in &holds {
        shared.end(&g.taken, Ending::Settle(1)).await;
    }
    wait_for("the idle lease went back", async || redis_value(&key).await == 20).await;
    assert_eq!(shared.leased_free(&key), 0);
}

/// A replica that holds leased slots and dies (no drop, its runtime gone): they lapse after
/// the slot lease's time to live, and another replica gets them.
#[test]
fn slots_of_a_replica_that_died_lapse() {
    let lease = LeaseSettings { idle: Duration::from_secs(3600), slot_ttl: Duration::from_millis(600) };
    let settings = settings("slots", lease);
    // 64 slots: leases of up to 4.
    let a = ask(Kind::Slots, 1, 64, 900_000);
    let dying = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let (key, held) = dying.block_on(async {
        let shared = Shared::new(settings.clone(), None);
        let mut held = 0;
        for _ in 0..6 {
            std::mem::forget(take(&shared, &a).await.unwrap());
            held += 1;
        }
        let key = shared.redis_key(&a, 0);
        let members = redis_members(&key).await;
        assert!(members >= held, "{members} members for {held} holds");
        std::mem::forget(shared);
        (key, members)
    });
    drop(dying);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    runtime.block_on(async {
        let other = Shared::new(settings, None);
        let mut got = Vec::new();
        while let Some(g) = take(&other, &a).await {
            got.push(g);
        }
        assert_eq!(got.len(), 64 - held, "the dead replica's slots still count");
        wait_for("the dead replica's slots lapsed", async || redis_members(&key).await <= 64 - held).await;
        while got.len() < 64 {
            if let Some(g) = take(&other, &a).await {
                got.push(g);
            } else {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // The living replica's own leased slots are renewed: still held after their ttl.
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert_eq!(redis_members(&key).await, 64);
        for g in &got {
            other.end(&g.taken, Ending::Release).await;
        }
        other.return_leases().await;
        assert_eq!(redis_members(&key).await, 0, "every slot back");
    });
}

/// Leases belong to one window: units leased in one are never used in the next, and ending a
/// hold of the last window after it is over changes nothing in the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_never_crosses_its_window() {
    let lease = LeaseSettings { idle: Duration::from_secs(3600), slot_ttl: Duration::from_secs(10) };
    let shared = Shared::new(settings("window", lease), None);
    let a = ask(Kind::Window, 1, 160_000, 2_000);
    // Start early in a window, so that the first part runs within it.
    let now_ms = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(2_000 - now_ms() % 2_000 + 20)).await;
    let first_key = shared.redis_key(&a, now_ms());
    let mut holds = Vec::new();
    for _ in 0..20 {
        holds.push(take(&shared, &a).await.unwrap());
    }
    assert!(shared.leased_free(&first_key) > 0);
    assert_eq!(shared.redis_key(&a, now_ms()), first_key, "still the first window");
    tokio::time::sleep(Duration::from_millis(2_000 - now_ms() % 2_000 + 20)).await;
    let second_key = shared.redis_key(&a, now_ms());
    assert_ne!(first_key, second_key);
    let g = take(&shared, &a).await.unwrap();
    assert_eq!(g.taken[0].storage_key, second_key);
    for h in &holds {
        shared.end(&h.taken, Ending::Release).await;
    }
    assert_eq!(
        redis_value(&second_key).await as u64,
        1 + shared.leased_free(&second_key),
        "the new window counts its own request and its own lease only"
    );
    shared.return_leases().await;
    assert_eq!(redis_value(&second_key).await, 1);
}

/// A rate's lease is served without Redis; idle, it goes back: the TAT moves back by exactly
/// the units the lease did not use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_lease_gives_back_what_it_did_not_use() {
    let lease = LeaseSettings { idle: Duration::from_millis(100), slot_ttl: Duration::from_secs(10) };
    let shared = Shared::new(settings("rate", lease), None);
    // 60,000 a minute: one unit a millisecond; slices of up to 50.
    let a = Ask { on_settle: OnSettle::Keep, ..ask(Kind::Rate, 1, 60_000, 60_000) };
    let key = shared.redis_key(&a, 0);
    for _ in 0..1_000 {
        take(&shared, &a).await.unwrap();
    }
    let free = shared.leased_free(&key);
    let before = tat(&key).await;
    assert!(free > 0, "slices grew with use");
    wait_for("the idle rate lease went back", async || shared.leased_free(&key) == 0).await;
    let after = tat(&key).await;
    assert!((before - after - free as f64 * 1_000.0).abs() < 1.0, "TAT {before} -> {after} for {free} units");
}

async fn tat(key: &str) -> f64 {
    let client = redis::Client::open(REDIS).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let v: String = redis::cmd("GET").arg(key).query_async(&mut c).await.unwrap();
    v.parse().unwrap()
}

/// A Redis of the test's own, on a free port, so that stopping it stops nobody else's.
struct OwnRedis(std::process::Child);

impl OwnRedis {
    async fn start() -> (OwnRedis, String) {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs");
        let url = format!("redis://127.0.0.1:{port}");
        let client = redis::Client::open(url.as_str()).unwrap();
        wait_for("the test's Redis answers", async || client.get_multiplexed_async_connection().await.is_ok()).await;
        (OwnRedis(child), url)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Redis goes away: what the lease holds is used first, without Redis; then the fallback (each
/// replica's share, here half) decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_held_when_redis_goes_away_is_used_then_the_fallback_applies() {
    let (redis, url) = OwnRedis::start().await;
    let lease = LeaseSettings { idle: Duration::from_secs(3600), slot_ttl: Duration::from_secs(10) };
    let settings = SharedSettings {
        url,
        timeout: Duration::from_millis(200),
        fallback: Fallback::Local { replicas: 2 },
        ..settings("away", lease)
    };
    let shared = Shared::new(settings, None);
    let a = ask(Kind::Window, 1, 16_000, FOREVER_MS);
    let key = shared.redis_key(&a, wall_ms());
    for _ in 0..40 {
        assert!(take(&shared, &a).await.unwrap().shared);
    }
    let free = shared.leased_free(&key);
    assert!(free > 0);
    drop(redis);
    for _ in 0..free {
        let g = shared.acquire(std::slice::from_ref(&a), Duration::from_secs(1)).await.unwrap();
        assert!(g.decision.granted && g.shared, "served from the lease");
    }
    assert!(!shared.degraded(), "no Redis needed so far");
    let g = shared.acquire(std::slice::from_ref(&a), Duration::from_secs(1)).await.unwrap();
    assert!(g.decision.granted && !g.shared, "the fallback decided");
    assert!(shared.degraded());
    assert_eq!(g.decision.states[0].limit, 8_000, "this replica's share");
}
