//! The server's command line (`sluice-sim [FLAGS]`), turned into a [`SimConfig`]. In the library
//! so the flags and their mapping are tested and documented with the rest.

use std::net::SocketAddr;
use std::time::Duration;

use crate::engine::latency::LatencyProfile;
use crate::{Faults, Flavor, KvEventsConfig, SimConfig, SimError};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (HTTP/1.1 and HTTP/2 prior knowledge).
    #[arg(long, default_value = "127.0.0.1:8001")]
    pub listen: SocketAddr,
    /// Served model name; repeat for aliases. The first labels engine metrics.
    #[arg(long = "model", default_value = "llama-3-8b")]
    pub models: Vec<String>,
    /// Seed for outputs, lengths, embeddings and the error dice.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Engine whose /metrics names to expose.
    #[arg(long, value_enum, default_value_t = Flavor::Vllm)]
    pub flavor: Flavor,
    /// Answer at once with no engine timing (measures pure gateway overhead).
    #[arg(long)]
    pub zero_delay: bool,
    /// Named calibration (llama-8b-h100, qwen3-32b-h100-tp2): step-time model and KV sizing.
    /// Explicit engine and latency flags override its values.
    #[arg(long)]
    pub profile: Option<String>,
    /// Run this many times faster than the modelled GPU (step times and injected delays divided).
    #[arg(long, default_value_t = 1.0)]
    pub speedup: f64,
    /// Most sequences running at once [default: 256].
    #[arg(long)]
    pub max_batch: Option<u32>,
    /// Token budget per engine step (longer prompts are prefilled in chunks) [default: 8192].
    #[arg(long)]
    pub max_batched_tokens: Option<u32>,
    /// KV cache size in blocks [default: 8192].
    #[arg(long)]
    pub kv_blocks: Option<u32>,
    /// Tokens per KV block [default: 16].
    #[arg(long)]
    pub block_size: Option<u32>,
    /// Longest prompt + output accepted.
    #[arg(long, default_value_t = 32_768)]
    pub max_model_len: u32,
    /// Divides every step time (2 = twice as fast as the default H100-like timings).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Fixed step overhead in microseconds [default: 3000].
    #[arg(long)]
    pub step_base_us: Option<u64>,
    /// Step time per prefill token in microseconds [default: 50].
    #[arg(long)]
    pub prefill_token_us: Option<u64>,
    /// Step time per decoding sequence in microseconds [default: 50].
    #[arg(long)]
    pub decode_seq_us: Option<u64>,
    /// Publish KV cache events at GET /kv_events.
    #[arg(long, value_enum, default_value_t = Toggle::On)]
    pub kv_events: Toggle,
    /// Delay between the engine step that changed the cache and its events' publication.
    #[arg(long, default_value_t = 0)]
    pub kv_events_delay_ms: u64,
    /// Event batches kept for replay with ?since=.
    #[arg(long, default_value_t = 4096)]
    pub kv_events_buffer: usize,
    /// Output length for every request without max_tokens.
    #[arg(long)]
    pub output_tokens: Option<u32>,
    /// Bounds of the seeded output length when neither max_tokens nor --output-tokens is set.
    #[arg(long, default_value_t = 16)]
    pub min_output_tokens: u32,
    #[arg(long, default_value_t = 256)]
    pub max_output_tokens: u32,
    /// Embedding size when a request does not set `dimensions`.
    #[arg(long, default_value_t = 384)]
    pub embedding_dim: u32,
    /// Fraction of requests answered 500.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Delay before the first token, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub stall_first_token_ms: u64,
    /// Cut the connection after this many streamed tokens.
    #[arg(long)]
    pub drop_after_tokens: Option<u32>,
    /// Extra delay per output token, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub slow_token_ms: u64,
    /// Answer whole (non-streamed) requests `200` with bytes that are not JSON.
    #[arg(long)]
    pub garbage_body: bool,
    /// In a stream, send an event whose data is not JSON after this many tokens, then end it
    /// (0: the first event).
    #[arg(long)]
    pub garbage_after_tokens: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Toggle {
    On,
    Off,
}

impl ServeArgs {
    /// The validated worker configuration these flags describe.
    pub fn into_config(self) -> Result<SimConfig, SimError> {
        let mut c = SimConfig {
            models: self.models,
            seed: self.seed,
            flavor: self.flavor,
            zero_delay: self.zero_delay,
            faults: Faults {
                error_rate: self.error_rate,
                stall_first_token: Duration::from_millis(self.stall_first_token_ms),
                drop_after_tokens: self.drop_after_tokens,
                slow_token: Duration::from_millis(self.slow_token_ms),
                garbage_body: self.garbage_body,
                garbage_after_tokens: self.garbage_after_tokens,
            },
            max_model_len: self.max_model_len,
            embedding_dim: self.embedding_dim,
            speedup: self.speedup,
            kv_events: KvEventsConfig {
                enabled: self.kv_events == Toggle::On,
                publish_delay: Duration::from_millis(self.kv_events_delay_ms),
                buffer: self.kv_events_buffer,
            },
            ..SimConfig::default()
        };
        c.latency.speed = self.speed;
        if let Some(name) = &self.profile {
            let profile = LatencyProfile::by_name(name).ok_or_else(|| {
                let names: Vec<_> = LatencyProfile::all().iter().map(|p| p.name).collect();
                SimError::InvalidConfig {
                    field: "profile",
                    reason: format!("{name:?} is not a profile (expected one of {})", names.join(", ")),
                }
            })?;
            c.apply_profile(&profile);
        }
        let e = &mut c.engine;
        e.max_running = self.max_batch.unwrap_or(e.max_running);
        e.max_batched_tokens = self.max_batched_tokens.unwrap_or(e.max_batched_tokens);
        e.kv_blocks = self.kv_blocks.unwrap_or(e.kv_blocks);
        e.block_size = self.block_size.unwrap_or(e.block_size);
        let l = &mut c.latency;
        l.base_step = self.step_base_us.map_or(l.base_step, Duration::from_micros);
        l.per_prefill_token = self.prefill_token_us.map_or(l.per_prefill_token, Duration::from_micros);
        l.per_decode_seq = self.decode_seq_us.map_or(l.per_decode_seq, Duration::from_micros);
        c.output.fixed = self.output_tokens;
        c.output.min = self.min_output_tokens;
        c.output.max = self.max_output_tokens;
        c.validate()?;
        Ok(c)
    }
}
