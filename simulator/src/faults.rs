//! Fault injection: errors, stalls, dropped connections and slow tokens, switchable at runtime.

use std::sync::{Mutex, RwLock};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::hash;

/// Faults applied to requests that arrive while they are set. `Default` is no faults.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// Fraction of inference requests answered 500 (seeded, so a run is repeatable).
    pub error_rate: f64,
    /// Delay before the first token (before the whole response when not streaming).
    pub stall_first_token: Duration,
    /// Abort the connection after this many output tokens have been sent.
    pub drop_after_tokens: Option<u32>,
    /// Extra delay between consecutive output tokens.
    pub slow_token: Duration,
    /// Answer a whole (non-streamed) chat or completion request `200` with bytes that are not
    /// JSON, the way a worker behind a broken proxy or mid-crash might.
    pub garbage_body: bool,
    /// In a stream, after this many output tokens send an event whose data is not JSON, then
    /// end the stream. `Some(0)` makes the very first event garbage.
    pub garbage_after_tokens: Option<u32>,
}

impl Faults {
    /// A rate outside 0..=1 (or NaN) is clamped rather than refused, so runtime switches
    /// cannot fail.
    fn sanitized(mut self) -> Self {
        self.error_rate = if self.error_rate.is_nan() { 0.0 } else { self.error_rate.clamp(0.0, 1.0) };
        self
    }
}

/// The worker's current faults and the seeded dice for `error_rate`.
#[derive(Debug)]
pub(crate) struct FaultState {
    current: RwLock<Faults>,
    dice: Mutex<SmallRng>,
}

impl FaultState {
    pub fn new(faults: Faults, seed: u64) -> Self {
        Self {
            current: RwLock::new(faults.sanitized()),
            dice: Mutex::new(SmallRng::seed_from_u64(hash::combine(seed, 0xFA17))),
        }
    }

    pub fn get(&self) -> Faults {
        match self.current.read() {
            Ok(f) => *f,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    pub fn set(&self, faults: Faults) {
        match self.current.write() {
            Ok(mut f) => *f = faults.sanitized(),
            Err(poisoned) => *poisoned.into_inner() = faults.sanitized(),
        }
    }

    /// Whether this request should fail. Rates of exactly 0 and 1 never touch the dice.
    pub fn roll_error(&self, faults: &Faults) -> bool {
        if faults.error_rate <= 0.0 {
            return false;
        }
        if faults.error_rate >= 1.0 {
            return true;
        }
        let roll: f64 = match self.dice.lock() {
            Ok(mut rng) => rng.random(),
            Err(poisoned) => poisoned.into_inner().random(),
        };
        roll < faults.error_rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_rate_is_seeded_and_roughly_honoured() {
        let count = |seed| {
            let s = FaultState::new(Faults { error_rate: 0.3, ..Faults::default() }, seed);
            let f = s.get();
            (0..1000).filter(|_| s.roll_error(&f)).count()
        };
        assert_eq!(count(1), count(1));
        assert!((200..400).contains(&count(1)));
    }

    #[test]
    fn runtime_switch_and_clamping() {
        let s = FaultState::new(Faults::default(), 0);
        assert!(!s.roll_error(&s.get()));
        s.set(Faults { error_rate: 7.0, ..Faults::default() });
        assert_eq!(s.get().error_rate, 1.0);
        assert!(s.roll_error(&s.get()));
        s.set(Faults { error_rate: f64::NAN, ..Faults::default() });
        assert_eq!(s.get().error_rate, 0.0);
    }
}
