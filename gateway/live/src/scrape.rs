//! Engine metrics: each worker's own Prometheus endpoint, read once a second for what only the
//! engine knows (its queue, its KV cache, its prefix-cache hits). The gateway's routing does not
//! scrape engines yet, so the live view does it itself; it reads vLLM's and SGLang's names.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::frame::EngineLive;

/// A metrics page larger than this is not an engine's.
const MAX_BODY: usize = 4 << 20;

/// The figures read from one page; `None` where the engine does not export the family.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EngineReading {
    pub running: Option<f64>,
    pub waiting: Option<f64>,
    pub kv_cache_usage: Option<f64>,
    /// Cumulative prefix-cache lookups and hits, in tokens (vLLM).
    pub prefix_queries: Option<f64>,
    pub prefix_hits: Option<f64>,
    /// SGLang reports a ready-made rate instead.
    pub prefix_hit_rate: Option<f64>,
}

/// Reads the families the live view needs from Prometheus text, summing over labels (an engine
/// serving several models reports one series per model).
pub fn parse(text: &str) -> EngineReading {
    let mut r = EngineReading::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        let rest = match line[name_end..].strip_prefix('{') {
            Some(labels) => labels.split_once('}').map_or("", |(_, v)| v),
            None => &line[name_end..],
        };
        let Some(value) = rest.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()) else { continue };
        let slot = match name {
            "vllm:num_requests_running" | "sglang:num_running_reqs" => &mut r.running,
            "vllm:num_requests_waiting" | "sglang:num_queue_reqs" => &mut r.waiting,
            "vllm:kv_cache_usage_perc" | "vllm:gpu_cache_usage_perc" | "sglang:token_usage" => &mut r.kv_cache_usage,
            "vllm:prefix_cache_queries_total" | "vllm:gpu_prefix_cache_queries_total" => &mut r.prefix_queries,
            "vllm:prefix_cache_hits_total" | "vllm:gpu_prefix_cache_hits_total" => &mut r.prefix_hits,
            "sglang:cache_hit_rate" => &mut r.prefix_hit_rate,
            _ => continue,
        };
        *slot = Some(slot.unwrap_or(0.0) + value);
    }
    r
}

#[derive(Debug, Clone, Copy)]
struct Last {
    reading: EngineReading,
    at: Instant,
    hit_rate: Option<f64>,
}

/// Scrapes engines and remembers each one's last reading, keyed by metrics URL.
#[derive(Debug)]
pub(crate) struct Scraper {
    client: Client<HttpConnector, Empty<Bytes>>,
    last: HashMap<String, Last>,
    timeout: Duration,
}

impl Scraper {
    pub fn new(timeout: Duration) -> Self {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(timeout));
        http.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(http);
        Scraper { client, last: HashMap::new(), timeout }
    }

    /// Scrapes every URL at once (each bounded by the timeout) and updates what is known.
    pub async fn scrape(&mut self, urls: &[String]) {
        let client = &self.client;
        let timeout = self.timeout;
        let results = futures_util::future::join_all(urls.iter().map(|url| async move {
            let text = tokio::time::timeout(timeout, fetch(client, url)).await.ok().flatten();
            (url, text)
        }))
        .await;
        let now = Instant::now();
        for (url, text) in results {
            let Some(text) = text else { continue };
            let reading = parse(&text);
            let previous = self.last.get(url.as_str());
            let hit_rate = reading.prefix_hit_rate.or_else(|| {
                let rate = previous.and_then(|p| {
                    let dq = reading.prefix_queries? - p.reading.prefix_queries?;
                    let dh = reading.prefix_hits? - p.reading.prefix_hits?;
                    (dq > 0.0).then(|| (dh / dq).clamp(0.0, 1.0))
                });
                rate.or(previous.and_then(|p| p.hit_rate))
            });
            self.last.insert(url.clone(), Last { reading, at: now, hit_rate });
        }
        self.last.retain(|url, _| urls.contains(url));
    }

    /// The engine's figures as of its last successful scrape.
    pub fn engine(&self, url: &str) -> Option<EngineLive> {
        let last = self.last.get(url)?;
        Some(EngineLive {
            running: last.reading.running,
            waiting: last.reading.waiting,
            kv_cache_usage: last.reading.kv_cache_usage,
            prefix_cache_hit_rate: last.hit_rate,
            age_ms: u64::try_from(last.at.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }
}

async fn fetch(client: &Client<HttpConnector, Empty<Bytes>>, url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let response = client.get(uri).await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let body = Limited::new(response.into_body(), MAX_BODY).collect().await.ok()?.to_bytes();
    String::from_utf8(body.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vllm_and_sglang_names_and_sums_over_labels() {
        let text = "# HELP vllm:num_requests_running Requests in the running batch.\n\
            # TYPE vllm:num_requests_running gauge\n\
            vllm:num_requests_running{model_name=\"a\"} 3\n\
            vllm:num_requests_running{model_name=\"b\"} 2\n\
            vllm:num_requests_waiting{model_name=\"a\"} 7\n\
            vllm:kv_cache_usage_perc{model_name=\"a\"} 0.25\n\
            vllm:prefix_cache_queries_total{model_name=\"a\"} 1000\n\
            vllm:prefix_cache_hits_total{model_name=\"a\"} 250 1700000000000\n\
            vllm:prompt_tokens_total{model_name=\"a\"} 99\n";
        let r = parse(text);
        assert_eq!(r.running, Some(5.0));
        assert_eq!(r.waiting, Some(7.0));
        assert_eq!(r.kv_cache_usage, Some(0.25));
        assert_eq!(r.prefix_queries, Some(1000.0));
        assert_eq!(r.prefix_hits, Some(250.0));
        let r = parse("sglang:num_queue_reqs 4\nsglang:token_usage 0.5\nsglang:cache_hit_rate 0.8\n");
        assert_eq!((r.waiting, r.kv_cache_usage, r.prefix_hit_rate), (Some(4.0), Some(0.5), Some(0.8)));
        assert_eq!(parse("garbage\n{}\nvllm:num_requests_running abc\n"), EngineReading::default());
    }
}
