//! `sluice-sim bench-streams`: one real-time worker serving N concurrent streams over HTTP from
//! the same process, to check that it keeps up with its own clock.
//!
//! All streams start at once with unique prompts and a fixed output length, with enough batch
//! slots and KV blocks that every one of them runs in the same batch. The worker's step lag (how
//! late each step's tokens went out relative to the step's modelled end) says whether the process
//! keeps up; the clients' inter-token latency against the modelled step time says the same from
//! the outside. The clients share the process and its cores, so the figures are conservative.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sluice_openai::sse::SseParser;
use tokio::task::JoinSet;

use super::BenchError;
use crate::engine::latency::{BatchShape, LatencyProfile, PolynomialLatency};
use crate::{SimConfig, SimWorker, StepLag};

/// Command-line arguments of `sluice-sim bench-streams`.
#[derive(Debug, Clone, clap::Args)]
pub struct StreamsArgs {
    /// Concurrent streaming requests.
    #[arg(long, default_value_t = 2000)]
    pub streams: u32,
    /// Output tokens per stream.
    #[arg(long, default_value_t = 128)]
    pub output_tokens: u32,
    /// Prompt tokens per stream (unique prompts, no cache hits).
    #[arg(long, default_value_t = 64)]
    pub prompt_tokens: u32,
    /// Time compression of the worker (see `--speedup` of the server).
    #[arg(long, default_value_t = 1.0)]
    pub speedup: f64,
    /// Named latency profile; the default is the server's default linear model.
    #[arg(long)]
    pub profile: Option<String>,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct StreamsReport {
    pub streams: u32,
    pub completed: u32,
    pub failed: u32,
    pub wall_time: Duration,
    pub tokens: u64,
    /// Modelled step time with every stream decoding, on the worker's (compressed) clock.
    pub modelled_step: Duration,
    /// Client-side mean gap between tokens, over all streams.
    pub itl_mean: Duration,
    pub ttft_p50: Duration,
    pub ttft_p99: Duration,
    pub lag: StepLag,
}

impl StreamsReport {
    pub fn tokens_per_s(&self) -> f64 {
        self.tokens as f64 / self.wall_time.as_secs_f64().max(1e-9)
    }

    pub fn table(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        format!(
            "| streams | completed | failed | wall s | tokens/s | modelled step ms | client ITL ms | TTFT p50 ms | TTFT p99 ms | steps | step lag p50 ms | step lag p99 ms | step lag max ms |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|---|\n\
             | {} | {} | {} | {:.1} | {:.0} | {:.1} | {:.1} | {:.0} | {:.0} | {} | {:.2} | {:.2} | {:.1} |\n",
            self.streams,
            self.completed,
            self.failed,
            self.wall_time.as_secs_f64(),
            self.tokens_per_s(),
            ms(self.modelled_step),
            ms(self.itl_mean),
            ms(self.ttft_p50),
            ms(self.ttft_p99),
            self.lag.steps,
            ms(self.lag.p50),
            ms(self.lag.p99),
            ms(self.lag.max),
        )
    }
}

#[derive(Debug, Default)]
struct StreamResult {
    ok: bool,
    tokens: u64,
    ttft: Duration,
    /// First to last token.
    decode: Duration,
}

fn config(args: &StreamsArgs) -> Result<SimConfig, BenchError> {
    let mut c = SimConfig { speedup: args.speedup, ..SimConfig::default() };
    if let Some(name) = &args.profile {
        let p = LatencyProfile::by_name(name).ok_or_else(|| BenchError::UnknownProfile(name.clone()))?;
        c.apply_profile(&p);
    }
    let bs = u64::from(c.engine.block_size);
    let per_stream = u64::from(args.prompt_tokens + args.output_tokens).div_ceil(bs) + 1;
    let needed = u32::try_from(per_stream * u64::from(args.streams)).unwrap_or(u32::MAX);
    c.engine.kv_blocks = c.engine.kv_blocks.max(needed);
    c.engine.max_running = c.engine.max_running.max(args.streams);
    c.max_model_len = c.max_model_len.max(args.prompt_tokens + args.output_tokens);
    // The bench reads the clock, not the cache.
    c.kv_events.enabled = false;
    Ok(c)
}

/// Runs the benchmark on the current tokio runtime.
pub async fn bench_streams(args: &StreamsArgs) -> Result<StreamsReport, BenchError> {
    let config = config(args)?;
    let latency = crate::engine::latency::LatencyConfig {
        speed: config.latency.speed * config.speedup,
        jitter: 0.0,
        ..config.latency
    };
    let context = u64::from(args.prompt_tokens + args.output_tokens / 2) * u64::from(args.streams);
    let modelled_step = PolynomialLatency::new(latency).mean_step_time(&BatchShape {
        prefill_tokens: 0,
        decode_seqs: args.streams,
        num_seqs: args.streams,
        decode_context_tokens: context,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(BenchError::Io)?;
    let sim = SimWorker::start(config, listener).await.map_err(BenchError::Worker)?;
    let url = format!("{}/v1/completions", sim.base_url());
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).pool_max_idle_per_host(args.streams as usize).build_http();
    let client = Arc::new(client);

    let started = Instant::now();
    let mut set = JoinSet::new();
    for i in 0..args.streams {
        let prompt: Vec<u32> = (0..args.prompt_tokens).map(|k| 1 + (i * 7919 + k * 31) % 31_000).collect();
        let body = serde_json::json!({
            "model": "llama-3-8b", "prompt": prompt, "max_tokens": args.output_tokens, "stream": true,
        });
        let (client, url) = (client.clone(), url.clone());
        set.spawn(async move { one_stream(&client, url, body.to_string()).await });
    }
    let mut results = Vec::with_capacity(args.streams as usize);
    while let Some(r) = set.join_next().await {
        results.push(r.unwrap_or_default());
    }
    let wall_time = started.elapsed();
    let lag = sim.step_lag();
    sim.shutdown().await;

    let ok: Vec<&StreamResult> = results.iter().filter(|r| r.ok).collect();
    let mut ttfts: Vec<Duration> = ok.iter().map(|r| r.ttft).collect();
    ttfts.sort_unstable();
    let pick = |q: f64| ttfts.get(((ttfts.len() as f64 * q) as usize).min(ttfts.len().saturating_sub(1))).copied();
    let gaps: u64 = ok.iter().map(|r| r.tokens.saturating_sub(1)).sum();
    let decode: Duration = ok.iter().map(|r| r.decode).sum();
    Ok(StreamsReport {
        streams: args.streams,
        completed: ok.len() as u32,
        failed: args.streams - ok.len() as u32,
        wall_time,
        tokens: results.iter().map(|r| r.tokens).sum(),
        modelled_step,
        itl_mean: if gaps > 0 { decode.div_f64(gaps as f64) } else { Duration::ZERO },
        ttft_p50: pick(0.5).unwrap_or_default(),
        ttft_p99: pick(0.99).unwrap_or_default(),
        lag,
    })
}

async fn one_stream(client: &Client<HttpConnector, Full<Bytes>>, url: String, body: String) -> StreamResult {
    let mut out = StreamResult::default();
    let Ok(req) = Request::post(url).header("content-type", "application/json").body(Full::new(Bytes::from(body)))
    else {
        return out;
    };
    let sent = Instant::now();
    let Ok(resp) = client.request(req).await else {
        return out;
    };
    if !resp.status().is_success() {
        return out;
    }
    let mut body = resp.into_body();
    let mut parser = SseParser::new(1 << 16);
    let mut first: Option<Instant> = None;
    let mut last = sent;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return out;
        };
        let Some(data) = frame.data_ref() else {
            continue;
        };
        parser.push(data);
        while let Ok(Some(ev)) = parser.next_event() {
            if ev.is_done() {
                out.ok = true;
            } else if ev.data.is_some() {
                let now = Instant::now();
                first.get_or_insert(now);
                last = now;
                out.tokens += 1;
            }
        }
    }
    if let Some(first) = first {
        out.ttft = first - sent;
        out.decode = last - first;
    }
    out
}
