//! Engine metrics: what only the engine knows (its batch, its wait queue, its KV cache, its
//! prefix-cache hits), read from each endpoint's own Prometheus page on an interval. This is the
//! one place the gateway reads them: route plugins get them in their candidates and the live view
//! shows them.
//!
//! Each engine names the figures its own way; the parser reads every dialect's names, so an
//! endpoint's engine decides only where the page is (`trtllm-serve` serves Prometheus text at
//! `/prometheus/metrics`, its `/metrics` being JSON) and whether there is one at all.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Limited};
use sluice_store_model::EngineFlavor;
use tokio_util::sync::CancellationToken;

use super::endpoint::Endpoint;
use super::pool::Pool;

/// A metrics page larger than this is not an engine's.
const MAX_PAGE: usize = 4 << 20;

/// The figures read from one page; `None` where the engine does not export the family.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EngineReading {
    pub running: Option<f64>,
    pub waiting: Option<f64>,
    /// Fraction of KV cache in use, 0..=1.
    pub kv_cache_usage: Option<f64>,
    /// Cumulative prefix-cache lookups and hits, in tokens (vLLM) or blocks (TensorRT-LLM).
    pub prefix_queries: Option<f64>,
    pub prefix_hits: Option<f64>,
    /// SGLang and TensorRT-LLM also report a ready-made rate.
    pub prefix_hit_rate: Option<f64>,
}

/// Where each figure comes from, by engine. Names are unique across engines, so one table
/// serves every dialect.
fn slot<'r>(r: &'r mut EngineReading, name: &str) -> Option<&'r mut Option<f64>> {
    Some(match name {
        "vllm:num_requests_running"
        | "sglang:num_running_reqs"
        | "trtllm_num_requests_running"
        | "llamacpp:requests_processing" => &mut r.running,
        "vllm:num_requests_waiting"
        | "sglang:num_queue_reqs"
        | "trtllm_num_requests_waiting"
        | "llamacpp:requests_deferred" => &mut r.waiting,
        "vllm:kv_cache_usage_perc"
        | "vllm:gpu_cache_usage_perc"
        | "sglang:token_usage"
        | "trtllm_kv_cache_utilization"
        | "llamacpp:kv_cache_usage_ratio" => &mut r.kv_cache_usage,
        "vllm:prefix_cache_queries_total" | "vllm:gpu_prefix_cache_queries_total" => &mut r.prefix_queries,
        "vllm:prefix_cache_hits_total" | "vllm:gpu_prefix_cache_hits_total" => &mut r.prefix_hits,
        "sglang:cache_hit_rate" | "trtllm_kv_cache_hit_rate" => &mut r.prefix_hit_rate,
        _ => return None,
    })
}

/// Reads the families routing needs from Prometheus text, summing over labels (an engine serving
/// several models reports one series per model). Lines that are not samples are skipped.
pub fn parse(text: &str) -> EngineReading {
    let mut r = EngineReading::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let (name, rest) = line.split_at(name_end);
        let rest = match rest.strip_prefix('{') {
            Some(labels) => labels.split_once('}').map_or("", |(_, v)| v),
            None => rest,
        };
        let Some(value) = rest.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()) else { continue };
        if !value.is_finite() {
            continue;
        }
        if let Some(slot) = slot(&mut r, name) {
            *slot = Some(slot.unwrap_or(0.0) + value);
        }
    }
    if let Some(usage) = &mut r.kv_cache_usage {
        *usage = usage.clamp(0.0, 1.0);
    }
    r
}

/// An endpoint's engine figures as of one read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineSample {
    pub reading: EngineReading,
    /// Prefix-cache hits over lookups since the previous read (the engine's own rate where it
    /// reports one; the last known value when nothing was looked up since).
    pub prefix_hit_rate: Option<f64>,
    pub at: Instant,
}

impl EngineSample {
    /// How old the sample is at `now`.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.at)
    }
}

/// One endpoint's engine telemetry: where its page is and the last sample read from it. Kept
/// by the endpoint, so it survives pool rebuilds with it.
#[derive(Debug)]
pub struct EngineTelemetry {
    flavor: EngineFlavor,
    /// `None` for engines whose metrics are not read.
    uri: Option<Uri>,
    last: ArcSwapOption<EngineSample>,
}

impl EngineTelemetry {
    pub fn new(flavor: EngineFlavor, base: &Uri) -> Result<Self, http::Error> {
        let path = match flavor {
            EngineFlavor::Vllm | EngineFlavor::Sglang | EngineFlavor::LlamaCpp => Some("/metrics"),
            EngineFlavor::Trtllm => Some("/prometheus/metrics"),
            EngineFlavor::Openai => None,
        };
        let uri = path.map(|path| page_uri(base, path)).transpose()?;
        Ok(EngineTelemetry { flavor, uri, last: ArcSwapOption::empty() })
    }

    pub fn flavor(&self) -> EngineFlavor {
        self.flavor
    }

    /// The last sample, however old; `None` before the first successful read.
    pub fn last(&self) -> Option<Arc<EngineSample>> {
        self.last.load_full()
    }

    /// Takes a page's reading as read at `at`.
    pub fn record(&self, reading: EngineReading, at: Instant) {
        let previous = self.last.load();
        let previous = previous.as_deref();
        let prefix_hit_rate = reading.prefix_hit_rate.map(|r| r.clamp(0.0, 1.0)).or_else(|| {
            let since = previous.and_then(|p| {
                let queries = reading.prefix_queries? - p.reading.prefix_queries?;
                let hits = reading.prefix_hits? - p.reading.prefix_hits?;
                (queries > 0.0).then(|| (hits / queries).clamp(0.0, 1.0))
            });
            since.or(previous.and_then(|p| p.prefix_hit_rate))
        });
        self.last.store(Some(Arc::new(EngineSample { reading, prefix_hit_rate, at })));
    }
}

/// Engines serve Prometheus at the root, whatever prefix the OpenAI API has (`…/v1`).
fn page_uri(base: &Uri, path: &str) -> Result<Uri, http::Error> {
    let mut parts = base.clone().into_parts();
    parts.path_and_query = Some(path.parse()?);
    Ok(Uri::from_parts(parts)?)
}

/// Reads every endpoint's page of `pool` until `cancel` fires. The first round runs at once.
pub async fn run(pool: Arc<Pool>, cancel: CancellationToken) {
    if pool.endpoints.iter().all(|e| e.engine.uri.is_none()) {
        return;
    }
    let mut interval = tokio::time::interval(pool.config.engine_metrics.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = interval.tick() => {}
        }
        futures_util::future::join_all(pool.endpoints.iter().map(|e| scrape(&pool, e))).await;
    }
}

async fn scrape(pool: &Pool, endpoint: &Endpoint) {
    let Some(uri) = &endpoint.engine.uri else { return };
    let outcome = match tokio::time::timeout(pool.config.engine_metrics.timeout, fetch(pool, endpoint, uri)).await {
        Ok(Some(text)) => {
            endpoint.engine.record(parse(&text), Instant::now());
            "ok"
        }
        Ok(None) => "error",
        Err(_) => "timeout",
    };
    endpoint.metrics.engine_scrape(outcome);
}

async fn fetch(pool: &Pool, endpoint: &Endpoint, uri: &Uri) -> Option<String> {
    let request = Request::builder().method(Method::GET).uri(uri.clone()).body(Bytes::new()).ok()?;
    let response = pool.client.send(endpoint.http2, request).await.ok()?;
    let ok = response.status().is_success();
    // Read the body even after an error status, so the connection goes back to the pool.
    let body = Limited::new(response.into_body(), MAX_PAGE).collect().await.ok()?.to_bytes();
    if !ok {
        return None;
    }
    String::from_utf8(body.into()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_dialect_and_sums_over_labels() {
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
        let r = parse(
            "trtllm_num_requests_running{engine_type=\"trtllm\",model_name=\"m\"} 6\n\
             trtllm_num_requests_waiting{engine_type=\"trtllm\",model_name=\"m\"} 1\n\
             trtllm_kv_cache_utilization{engine_type=\"trtllm\",model_name=\"m\"} 0.4\n\
             trtllm_kv_cache_hit_rate{engine_type=\"trtllm\",model_name=\"m\"} 0.3\n",
        );
        assert_eq!(
            (r.running, r.waiting, r.kv_cache_usage, r.prefix_hit_rate),
            (Some(6.0), Some(1.0), Some(0.4), Some(0.3))
        );
        let r =
            parse("llamacpp:requests_processing 2\nllamacpp:requests_deferred 5\nllamacpp:kv_cache_usage_ratio 0.9\n");
        assert_eq!((r.running, r.waiting, r.kv_cache_usage), (Some(2.0), Some(5.0), Some(0.9)));
        assert_eq!(
            parse("garbage\n{}\nvllm:num_requests_running abc\nvllm:num_requests_waiting NaN\n"),
            EngineReading::default()
        );
        assert_eq!(parse("vllm:kv_cache_usage_perc 1.5\n").kv_cache_usage, Some(1.0), "clamped");
    }

    #[test]
    fn the_hit_rate_is_over_the_lookups_since_the_previous_read() {
        let base: Uri = "http://10.0.0.7:8000/v1".parse().unwrap();
        let t = EngineTelemetry::new(EngineFlavor::Vllm, &base).unwrap();
        assert_eq!(t.uri.as_ref().map(ToString::to_string).as_deref(), Some("http://10.0.0.7:8000/metrics"));
        assert!(t.last().is_none());
        let at = Instant::now();
        let read =
            |q: f64, h: f64| EngineReading { prefix_queries: Some(q), prefix_hits: Some(h), ..Default::default() };
        t.record(read(100.0, 10.0), at);
        assert_eq!(t.last().unwrap().prefix_hit_rate, None, "one reading gives no rate");
        t.record(read(300.0, 160.0), at);
        assert_eq!(t.last().unwrap().prefix_hit_rate, Some(0.75));
        t.record(read(300.0, 160.0), at);
        assert_eq!(t.last().unwrap().prefix_hit_rate, Some(0.75), "nothing looked up: the last rate stays");

        let trt = EngineTelemetry::new(EngineFlavor::Trtllm, &base).unwrap();
        assert_eq!(trt.uri.unwrap().path(), "/prometheus/metrics");
        assert!(EngineTelemetry::new(EngineFlavor::Openai, &base).unwrap().uri.is_none());
    }
}
