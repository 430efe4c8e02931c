//! How long one engine step takes. A trait so a calibrated model (per GPU, per model size, with
//! attention cost growing with context) can replace the linear default without touching the
//! scheduler.

use std::time::Duration;

/// What the scheduler put into one step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchShape {
    /// Prompt (or recomputed) tokens processed this step.
    pub prefill_tokens: u32,
    /// Sequences producing their next token from a single new token.
    pub decode_seqs: u32,
    /// All sequences in the step.
    pub num_seqs: u32,
}

pub trait LatencyModel: Send + std::fmt::Debug {
    fn step_time(&self, batch: &BatchShape) -> Duration;
}

/// `step = (base + per_prefill_token · prefill_tokens + per_decode_seq · decode_seqs) / speed`.
///
/// The defaults are in the range of an 8B model on one H100 (a few ms per decode step, prefill
/// around 20k tokens/s) so a 100-token reply takes about 0.3 s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyConfig {
    pub base_step: Duration,
    pub per_prefill_token: Duration,
    pub per_decode_seq: Duration,
    /// Divides every step time: 2.0 runs twice as fast as the figures above.
    pub speed: f64,
}

impl Default for LatencyConfig {
    fn default() -> Self {
        Self {
            base_step: Duration::from_micros(3_000),
            per_prefill_token: Duration::from_micros(50),
            per_decode_seq: Duration::from_micros(50),
            speed: 1.0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct LinearLatency(pub LatencyConfig);

impl LatencyModel for LinearLatency {
    fn step_time(&self, batch: &BatchShape) -> Duration {
        let c = &self.0;
        let raw = c.base_step
            + c.per_prefill_token.saturating_mul(batch.prefill_tokens)
            + c.per_decode_seq.saturating_mul(batch.decode_seqs);
        if c.speed.is_finite() && c.speed > 0.0 { raw.div_f64(c.speed) } else { raw }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_with_prefill_and_batch_and_scales_with_speed() {
        let m = LinearLatency(LatencyConfig::default());
        let one = m.step_time(&BatchShape { prefill_tokens: 0, decode_seqs: 1, num_seqs: 1 });
        let many = m.step_time(&BatchShape { prefill_tokens: 0, decode_seqs: 100, num_seqs: 100 });
        let prefill = m.step_time(&BatchShape { prefill_tokens: 1000, decode_seqs: 0, num_seqs: 1 });
        assert!(one < many && many < prefill);
        let fast = LinearLatency(LatencyConfig { speed: 2.0, ..LatencyConfig::default() });
        let b = BatchShape { prefill_tokens: 10, decode_seqs: 3, num_seqs: 4 };
        assert_eq!(fast.step_time(&b) * 2, m.step_time(&b));
    }
}
