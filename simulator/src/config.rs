//! Worker configuration, validated once at start.

use std::time::Duration;

use crate::engine::EngineConfig;
use crate::engine::latency::{LatencyConfig, LatencyProfile};
use crate::error::SimError;
use crate::faults::Faults;
use crate::flavor::Flavor;
use crate::kv_log::KvEventsConfig;
use crate::sampling::OutputLength;

#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Served model names; the first is the one engine metrics are labelled with.
    pub models: Vec<String>,
    /// Seeds outputs, lengths, embeddings and the error dice.
    pub seed: u64,
    /// The engine impersonated by `/metrics` (names and labels).
    pub flavor: Flavor,
    /// Answer at once with no engine at all (gateway-overhead benchmarks).
    pub zero_delay: bool,
    pub faults: Faults,
    pub engine: EngineConfig,
    pub latency: LatencyConfig,
    /// Real-time mode runs this many times faster than the modelled GPU: every step time and
    /// injected delay is divided by it. Latencies in `/metrics` are on the worker's (compressed)
    /// clock, so they agree with what a client or the gateway measures.
    pub speedup: f64,
    /// KV cache events at `GET /kv_events`.
    pub kv_events: KvEventsConfig,
    /// Output length when the client sets no `max_tokens`.
    pub output: OutputLength,
    /// Longest prompt + output accepted, like vLLM's `--max-model-len`.
    pub max_model_len: u32,
    /// Embedding size when the request does not ask for `dimensions`.
    pub embedding_dim: u32,
    /// How long shutdown waits for in-flight requests before cutting connections.
    pub shutdown_grace: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            models: vec!["llama-3-8b".to_owned()],
            seed: 0,
            flavor: Flavor::default(),
            zero_delay: false,
            faults: Faults::default(),
            engine: EngineConfig::default(),
            latency: LatencyConfig::default(),
            speedup: 1.0,
            kv_events: KvEventsConfig::default(),
            output: OutputLength::default(),
            max_model_len: 32_768,
            embedding_dim: 384,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> SimError {
    SimError::InvalidConfig { field, reason: reason.into() }
}

impl SimConfig {
    pub fn validate(&self) -> Result<(), SimError> {
        if self.models.is_empty() {
            return Err(invalid("models", "must name at least one model"));
        }
        if self.models.iter().any(|m| m.trim().is_empty()) {
            return Err(invalid("models", "must not contain an empty name"));
        }
        let e = &self.engine;
        for (field, v) in [
            ("engine.max_running", e.max_running),
            ("engine.max_batched_tokens", e.max_batched_tokens),
            ("engine.kv_blocks", e.kv_blocks),
            ("engine.block_size", e.block_size),
            ("max_model_len", self.max_model_len),
            ("embedding_dim", self.embedding_dim),
            ("output.min", self.output.min),
        ] {
            if v == 0 {
                return Err(invalid(field, "must be at least 1"));
            }
        }
        if self.output.min > self.output.max {
            return Err(invalid("output.max", "must not be below output.min"));
        }
        if self.output.fixed == Some(0) {
            return Err(invalid("output.fixed", "must be at least 1"));
        }
        if !(self.latency.speed.is_finite() && self.latency.speed > 0.0) {
            return Err(invalid("latency.speed", "must be a positive number"));
        }
        if !(self.speedup.is_finite() && self.speedup > 0.0) {
            return Err(invalid("speedup", "must be a positive number"));
        }
        if self.kv_events.buffer == 0 {
            return Err(invalid("kv_events.buffer", "must be at least 1"));
        }
        let rate = self.faults.error_rate;
        if !(0.0..=1.0).contains(&rate) {
            return Err(invalid("faults.error_rate", "must be between 0 and 1"));
        }
        Ok(())
    }

    /// Takes a named calibration's step-time coefficients and engine sizing (KV blocks, block
    /// size, step budget, batch slots), keeping this config's seed and per-worker speed.
    pub fn apply_profile(&mut self, profile: &LatencyProfile) {
        self.engine = profile.engine;
        self.latency = LatencyConfig { seed: self.seed, speed: self.latency.speed, ..profile.latency };
    }

    /// A simulated duration on the worker's clock (divided by `speedup`).
    pub(crate) fn compress(&self, d: Duration) -> Duration {
        if self.speedup == 1.0 { d } else { d.div_f64(self.speedup) }
    }

    /// The model answering a request for `name`, if this worker serves it.
    pub fn serves(&self, name: &str) -> bool {
        self.models.iter().any(|m| m == name)
    }

    pub(crate) fn default_model(&self) -> &str {
        self.models.first().map_or("", String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_errors_name_the_field() {
        SimConfig::default().validate().unwrap();
        let mut c = SimConfig::default();
        c.engine.kv_blocks = 0;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("engine.kv_blocks"), "{err}");
        let c = SimConfig { models: vec![], ..SimConfig::default() };
        assert!(c.validate().is_err());
    }
}
