//! How long one engine step takes. A trait so other models (measured tables, per-GPU fits) can
//! replace the polynomial default without touching the scheduler.
//!
//! The default, [`PolynomialLatency`], is
//!
//! ```text
//! t = (c0 + cp·P + cq·P² + cb·B + ckv·KV/1000) · (1 ± jitter) / speed
//! ```
//!
//! with P the prompt (or recomputed) tokens in the step, B the decoding sequences and KV the
//! total context those sequences attend over. Named calibrations are in [`LatencyProfile`].

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::EngineConfig;

/// What the scheduler put into one step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchShape {
    /// Prompt (or recomputed) tokens processed this step.
    pub prefill_tokens: u32,
    /// Sequences producing their next token from a single new token.
    pub decode_seqs: u32,
    /// All sequences in the step.
    pub num_seqs: u32,
    /// Context (prompt + generated tokens) of the decoding sequences: the KV read by attention.
    pub decode_context_tokens: u64,
}

pub trait LatencyModel: Send + std::fmt::Debug {
    /// The duration of a step running `batch`. `&mut` so a model can draw seeded jitter.
    fn step_time(&mut self, batch: &BatchShape) -> Duration;
}

/// Coefficients of [`PolynomialLatency`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyConfig {
    /// `c0`: fixed cost of a step (weights read once, kernel launches, scheduling).
    pub base_step: Duration,
    /// `cp`: per prefill token (the matrix multiplies).
    pub per_prefill_token: Duration,
    /// `cq`, in nanoseconds per prefill token squared (attention within the step's prefill).
    pub prefill_quadratic_ns: f64,
    /// `cb`: per decoding sequence.
    pub per_decode_seq: Duration,
    /// `ckv`: per 1 000 tokens of context attended by decoding sequences (KV reads).
    pub per_kv_ktoken: Duration,
    /// Relative jitter: each step is scaled by a seeded uniform factor in `1 ± jitter`.
    pub jitter: f64,
    /// Seed of the jitter stream.
    pub seed: u64,
    /// Divides every step time: 2.0 runs twice as fast (a faster GPU in a heterogeneous pool).
    pub speed: f64,
}

impl Default for LatencyConfig {
    /// The historic real-time default: 3 ms + 50 µs per prefill token + 50 µs per decoding
    /// sequence, no context or quadratic term, no jitter.
    fn default() -> Self {
        Self {
            base_step: Duration::from_micros(3_000),
            per_prefill_token: Duration::from_micros(50),
            prefill_quadratic_ns: 0.0,
            per_decode_seq: Duration::from_micros(50),
            per_kv_ktoken: Duration::ZERO,
            jitter: 0.0,
            seed: 0,
            speed: 1.0,
        }
    }
}

/// A named calibration: latency coefficients and the engine sizing that goes with them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyProfile {
    pub name: &'static str,
    pub description: &'static str,
    pub latency: LatencyConfig,
    pub engine: EngineConfig,
}

impl LatencyProfile {
    /// All shipped profiles; sources and derivations are in `simulator/README.md`.
    pub fn all() -> [LatencyProfile; 2] {
        [
            LatencyProfile {
                name: "llama-8b-h100",
                description: "8B-class dense model (Llama-3.1-8B), bf16, one H100 80GB",
                latency: LatencyConfig {
                    base_step: Duration::from_micros(6_000),
                    per_prefill_token: Duration::from_nanos(35_000),
                    prefill_quadratic_ns: 0.5,
                    per_decode_seq: Duration::from_micros(25),
                    per_kv_ktoken: Duration::from_micros(45),
                    jitter: 0.03,
                    seed: 0,
                    speed: 1.0,
                },
                engine: EngineConfig { max_running: 256, max_batched_tokens: 8192, kv_blocks: 28_000, block_size: 16 },
            },
            LatencyProfile {
                name: "qwen3-32b-h100-tp2",
                description: "32B dense model (Qwen3-32B), bf16, two H100 80GB with tensor parallelism 2",
                latency: LatencyConfig {
                    base_step: Duration::from_micros(10_000),
                    per_prefill_token: Duration::from_nanos(55_000),
                    prefill_quadratic_ns: 0.9,
                    per_decode_seq: Duration::from_micros(30),
                    per_kv_ktoken: Duration::from_micros(45),
                    jitter: 0.03,
                    seed: 0,
                    speed: 1.0,
                },
                // 307,328 KV tokens = 4,802 blocks of 64.
                engine: EngineConfig { max_running: 256, max_batched_tokens: 8192, kv_blocks: 4_802, block_size: 64 },
            },
        ]
    }

    pub fn by_name(name: &str) -> Option<LatencyProfile> {
        Self::all().into_iter().find(|p| p.name == name)
    }
}

/// The polynomial step-time model with seeded jitter.
#[derive(Debug, Clone)]
pub struct PolynomialLatency {
    config: LatencyConfig,
    rng: SmallRng,
}

impl PolynomialLatency {
    pub fn new(config: LatencyConfig) -> Self {
        Self { config, rng: SmallRng::seed_from_u64(config.seed) }
    }

    /// The step time without jitter.
    pub fn mean_step_time(&self, batch: &BatchShape) -> Duration {
        let c = &self.config;
        let p = f64::from(batch.prefill_tokens);
        let quadratic = Duration::from_secs_f64((c.prefill_quadratic_ns.max(0.0) * p * p) / 1e9);
        let kv = c.per_kv_ktoken.mul_f64(batch.decode_context_tokens as f64 / 1000.0);
        let raw = c.base_step
            + c.per_prefill_token.saturating_mul(batch.prefill_tokens)
            + quadratic
            + c.per_decode_seq.saturating_mul(batch.decode_seqs)
            + kv;
        if c.speed.is_finite() && c.speed > 0.0 { raw.div_f64(c.speed) } else { raw }
    }
}

impl LatencyModel for PolynomialLatency {
    fn step_time(&mut self, batch: &BatchShape) -> Duration {
        let mean = self.mean_step_time(batch);
        let j = self.config.jitter;
        if j > 0.0 && j < 1.0 { mean.mul_f64(1.0 + self.rng.random_range(-j..=j)) } else { mean }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(prefill: u32, decode: u32, ctx: u64) -> BatchShape {
        BatchShape {
            prefill_tokens: prefill,
            decode_seqs: decode,
            num_seqs: decode + u32::from(prefill > 0),
            decode_context_tokens: ctx,
        }
    }

    #[test]
    fn grows_with_prefill_and_batch_and_scales_with_speed() {
        let mut m = PolynomialLatency::new(LatencyConfig::default());
        let one = m.step_time(&shape(0, 1, 0));
        let many = m.step_time(&shape(0, 100, 0));
        let prefill = m.step_time(&shape(1000, 0, 0));
        assert!(one < many && many < prefill);
        let mut fast = PolynomialLatency::new(LatencyConfig { speed: 2.0, ..LatencyConfig::default() });
        let b = shape(10, 3, 0);
        assert_eq!(fast.step_time(&b) * 2, m.step_time(&b));
    }

    #[test]
    fn profiles_have_the_documented_terms_and_seeded_jitter() {
        let p = LatencyProfile::by_name("qwen3-32b-h100-tp2").unwrap();
        assert_eq!(p.engine.kv_blocks * p.engine.block_size, 307_328);
        let m = PolynomialLatency::new(LatencyConfig { jitter: 0.0, ..p.latency });
        // Full 8192-token prefill step: 10 ms + 451 ms linear + 60 ms quadratic.
        let full = m.mean_step_time(&shape(8192, 0, 0)).as_secs_f64();
        assert!((full - 0.521).abs() < 0.002, "{full}");
        // KV term: 300k tokens of context adds 13.5 ms.
        let kv = m.mean_step_time(&shape(0, 40, 300_000)) - m.mean_step_time(&shape(0, 40, 0));
        assert_eq!(kv, Duration::from_micros(13_500));
        // The published llm-d ITLs: ~11-12 ms with a handful of short sequences, ~24-25 ms with
        // the KV cache full of decoding sequences.
        let light = m.mean_step_time(&shape(0, 5, 40_000)).as_secs_f64();
        assert!((0.011..0.013).contains(&light), "{light}");
        let full_kv = m.mean_step_time(&shape(0, 40, 300_000)).as_secs_f64();
        assert!((0.023..0.026).contains(&full_kv), "{full_kv}");
        let draw = |seed| {
            let mut m = PolynomialLatency::new(LatencyConfig { seed, ..p.latency });
            (0..5).map(|_| m.step_time(&shape(0, 8, 1000))).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
        assert!(LatencyProfile::by_name("nope").is_none());
    }
}
