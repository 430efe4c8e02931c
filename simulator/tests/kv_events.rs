//! `GET /kv_events`: stored and removed blocks as the engine sees them, replay and gaps, the
//! publish delay.

#![expect(clippy::unwrap_used, clippy::expect_used, reason = "test helpers fail the test on any error")]

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};
use sluice_openai::sse::SseParser;
use sluice_routing::chain_block_hashes;
use sluice_sim::{KvEventsConfig, SimConfig, SimHandle};
use support::*;

struct Subscriber {
    body: Incoming,
    parser: SseParser,
}

/// One SSE frame: its `event:` name (None for batches) and its JSON data.
type Frame = (Option<String>, Value);

impl Subscriber {
    async fn open(sim: &SimHandle, query: &str) -> Self {
        let url = format!("{}/kv_events{query}", sim.base_url());
        let resp = client().request(Request::get(url).body(Full::new(Bytes::new())).unwrap()).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Subscriber { body: resp.into_body(), parser: SseParser::new(1 << 22) }
    }

    async fn next(&mut self) -> Frame {
        loop {
            if let Some(ev) = self.parser.next_event().unwrap()
                && let Some(data) = ev.data
            {
                return (ev.event, serde_json::from_slice(&data).unwrap());
            }
            let frame = self.body.frame().await.expect("stream ended").unwrap();
            if let Some(data) = frame.data_ref() {
                self.parser.push(data);
            }
        }
    }

    /// Batches until one whose events satisfy `done`, returning every event seen.
    async fn events_until(&mut self, mut done: impl FnMut(&[Value]) -> bool) -> Vec<Value> {
        let mut all = Vec::new();
        loop {
            let (name, batch) = self.next().await;
            assert_eq!(name, None, "unexpected {batch}");
            all.extend(batch["events"].as_array().unwrap().iter().cloned());
            if done(&all) {
                return all;
            }
        }
    }
}

fn hashes(ev: &Value) -> Vec<u64> {
    ev["block_hashes"].as_array().unwrap().iter().map(|h| h.as_u64().unwrap()).collect()
}

fn of_type<'a>(events: &'a [Value], ty: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == ty).collect()
}

fn stored_count(events: &[Value]) -> usize {
    of_type(events, "BlockStored").iter().map(|e| hashes(e).len()).sum()
}

async fn complete(sim: &SimHandle, prompt: &[u32]) {
    let url = format!("{}/v1/completions", sim.base_url());
    let (status, _) = post(&client(), url, &json!({"model": "llama-3-8b", "prompt": prompt, "max_tokens": 4})).await;
    assert_eq!(status, 200);
}

fn hashes_u64(tokens: &[u32]) -> Vec<u64> {
    chain_block_hashes(tokens, 16).iter().map(|h| h.0).collect()
}

#[tokio::test]
async fn stored_blocks_match_the_engine_hashes_and_evictions_are_removed() {
    // 16 blocks of 16 tokens: two 200-token prompts fit, a third evicts.
    let mut config = SimConfig::default();
    config.engine.kv_blocks = 16;
    let sim = start(config).await;
    let mut sub = Subscriber::open(&sim, "?since=0").await;
    let (_, first) = sub.next().await;
    assert_eq!(first["seq"], 1);
    assert_eq!(first["events"], json!([{"type": "AllBlocksCleared"}]));

    let a: Vec<u32> = (1000..1200).collect();
    let mut b = a[..160].to_vec(); // shares 10 blocks with `a`
    b.extend(2000..2040);
    let c: Vec<u32> = (3000..3200).collect();
    let (ha, hb) = (hashes_u64(&a), hashes_u64(&b));

    complete(&sim, &a).await;
    let events = sub.events_until(|e| stored_count(e) >= 12).await;
    let stored = of_type(&events, "BlockStored");
    let all: Vec<u64> = stored.iter().flat_map(|e| hashes(e)).collect();
    assert_eq!(all, ha, "the 12 full blocks, in chain order");
    assert_eq!(stored[0]["parent_block_hash"], Value::Null);
    assert_eq!(stored[0]["block_size"], 16);
    assert_eq!(stored[0]["medium"], "GPU");
    let tokens: Vec<u32> = stored
        .iter()
        .flat_map(|e| e["token_ids"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32))
        .collect();
    assert_eq!(tokens, a[..192]);

    // The shared prefix is a cache hit: only b's two new blocks are stored, chained to a's 10th.
    complete(&sim, &b).await;
    let events = sub.events_until(|e| stored_count(e) >= 2).await;
    let stored = of_type(&events, "BlockStored");
    assert_eq!(stored.len(), 1, "{events:?}");
    assert_eq!(hashes(stored[0]), hb[10..12]);
    assert_eq!(stored[0]["parent_block_hash"], json!(ha[9]));
    assert_eq!(ha[..10], hb[..10]);
    assert!(of_type(&events, "BlockRemoved").is_empty());

    // c needs 13 blocks: the free queue gives up the uncached tail blocks, then cached blocks in
    // LRU order: a's 11th and 12th, b's, then a's from the 10th down to the 4th.
    complete(&sim, &c).await;
    let events = sub.events_until(|e| stored_count(e) >= 12).await;
    let removed: HashSet<u64> = of_type(&events, "BlockRemoved").iter().flat_map(|e| hashes(e)).collect();
    let expected: HashSet<u64> = ha[3..12].iter().chain(&hb[10..12]).copied().collect();
    assert_eq!(removed, expected);
    let first_removed = events.iter().position(|e| e["type"] == "BlockRemoved").unwrap();
    let first_stored = events.iter().position(|e| e["type"] == "BlockStored").unwrap();
    assert!(first_removed < first_stored, "evictions happen at allocation, before c's blocks are computed");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_subscriber_that_fell_behind_the_ring_gets_a_gap_then_the_rest() {
    let mut config = SimConfig::default();
    config.kv_events.buffer = 2;
    let sim = start(config).await;
    for i in 0..4u32 {
        let prompt: Vec<u32> = (i * 100 + 1..i * 100 + 40).collect();
        complete(&sim, &prompt).await;
    }
    // AllBlocksCleared plus at least one batch per request; only the last two are kept.
    let head = sim.kv_events_head();
    assert!(head >= 5, "{head}");
    let mut sub = Subscriber::open(&sim, "?since=0").await;
    let (name, gap) = sub.next().await;
    assert_eq!(name.as_deref(), Some("gap"));
    assert_eq!(gap, json!({"gap": {"expected_seq": 1, "resume_seq": head - 1}}));
    assert_eq!(sub.next().await.1["seq"], head - 1);
    assert_eq!(sub.next().await.1["seq"], head);

    // Replay by Last-Event-ID, as a reconnecting SSE client does.
    let url = format!("{}/kv_events", sim.base_url());
    let req = Request::get(url).header("last-event-id", (head - 1).to_string()).body(Full::new(Bytes::new())).unwrap();
    let mut sub =
        Subscriber { body: client().request(req).await.unwrap().into_body(), parser: SseParser::new(1 << 20) };
    assert_eq!(sub.next().await.1["seq"], head);

    let (status, _) = get(&client(), format!("{}/kv_events?since=x", sim.base_url())).await;
    assert_eq!(status, 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_publish_delay_holds_events_back_after_the_step() {
    let delay = Duration::from_millis(300);
    let config = SimConfig {
        kv_events: KvEventsConfig { publish_delay: delay, ..KvEventsConfig::default() },
        ..SimConfig::default()
    };
    let sim = start(config).await;
    let mut sub = Subscriber::open(&sim, "").await;
    let sent = Instant::now();
    complete(&sim, &(1..100).collect::<Vec<u32>>()).await;
    // The response is out; the step that stored the blocks ended before it, but nothing that
    // step produced may be published until the delay has passed since.
    let head_after_response = sim.kv_events_head();
    let (_, batch) = sub.next().await;
    let received = sent.elapsed();
    assert_eq!(batch["seq"], 2);
    assert_eq!(batch["events"][0]["type"], "BlockStored");
    assert!(received >= delay, "published {received:?} after the request, before the {delay:?} delay");
    assert_eq!(head_after_response, 1, "only AllBlocksCleared was public when the response completed");
    sim.shutdown().await;
}

#[tokio::test]
async fn kv_events_off_means_no_endpoint() {
    let config =
        SimConfig { kv_events: KvEventsConfig { enabled: false, ..KvEventsConfig::default() }, ..SimConfig::default() };
    let sim = start(config).await;
    let (status, _) = get(&client(), format!("{}/kv_events", sim.base_url())).await;
    assert_eq!(status, 404);
    assert_eq!(sim.kv_events_head(), 0);
    sim.shutdown().await;
}
