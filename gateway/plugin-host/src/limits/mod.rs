//! The `limits` capability's backends: rate limits (GCRA), fixed and calendar-month windows
//! and concurrency slots, checked all or none and held by the request that took them.
//!
//! One algorithm, two places to keep its state: [`local`] in this process (one replica), and
//! [`shared`] in Redis, so that every replica enforces one global limit: from slices of quota
//! each replica leases ([`lease`]; never over the limit, under it by a stated bound) or through
//! one atomic script per decision (exact); when Redis is unreachable it falls back to local
//! state with the limits divided by the configured replica count, or fails closed. [`held`] is
//! a request's holds, ended by the plugin (`settle`, `release`) or, at the latest, when the
//! request ends.

pub mod calendar;
pub mod headers;
pub mod held;
pub mod lease;
pub mod local;
mod scripts;
pub mod shared;
pub mod standing;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use held::{RequestEnd, RequestLimits, Usage};
pub use lease::LeaseSettings;
pub use local::Local;
pub use shared::{Fallback, Shared, SharedMode, SharedSettings};

/// Limits one `acquire` may check at once.
pub const MAX_LIMITS_PER_CALL: usize = 16;
/// The longest guest key.
pub const MAX_KEY_BYTES: usize = 512;
/// The longest a `limits` decision may wait for the shared backend, whatever the deadline.
pub const MAX_LIMITS_WAIT: Duration = Duration::from_secs(1);
/// The most slots one `acquire` may take of one limit.
pub const MAX_SLOTS_PER_CALL: u64 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Rate,
    Window,
    Month,
    Slots,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnSettle {
    Keep,
    /// Replaced by the tokens used.
    Tokens,
    GiveBack,
}

/// One limit an `acquire` checks, its key already placed in its owner by the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    /// The owner's prefix followed by the guest's key.
    pub key: String,
    /// The length of the owner's prefix at the start of `key`.
    pub owner_len: usize,
    pub kind: Kind,
    pub amount: u64,
    pub limit: u64,
    pub period_ms: u64,
    pub burst: u64,
    pub on_settle: OnSettle,
}

impl Ask {
    /// Where the limit's state lives at `now_ms`: the key, tagged by kind (a key used as a rate
    /// and as a window names two limits) and, for windows, by the window.
    pub fn storage_key(&self, now_ms: u64) -> String {
        // Concatenated, not `format!`ed: this runs for every limit of every decision.
        let (tag, window) = match self.kind {
            Kind::Rate => ("#r", None),
            Kind::Slots => ("#s", None),
            Kind::Window => ("#w", Some(now_ms / self.period_ms.max(1))),
            Kind::Month => ("#m", Some(calendar::month(now_ms).0)),
        };
        let mut number = itoa::Buffer::new();
        let window = window.map_or("", |w| number.format(w));
        let mut key = String::with_capacity(self.key.len() + tag.len() + window.len());
        key.push_str(&self.key);
        key.push_str(tag);
        key.push_str(window);
        key
    }

    /// When the window holding `now_ms` ends (windows and months only).
    pub fn window_end_ms(&self, now_ms: u64) -> u64 {
        match self.kind {
            Kind::Month => calendar::month(now_ms).1,
            _ => {
                let period = self.period_ms.max(1);
                (now_ms / period + 1).saturating_mul(period)
            }
        }
    }

    /// The same limit with its `limit` and `burst` divided among `replicas` (at least 1 each),
    /// for the fallback when the shared state is away.
    pub fn divided(&self, replicas: u64) -> Ask {
        let share = |v: u64| if v == 0 { 0 } else { v.div_ceil(replicas.max(1)).max(1) };
        Ask { limit: share(self.limit), burst: share(self.burst), ..self.clone() }
    }
}

/// A limit after a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LimitState {
    pub limit: u64,
    pub remaining: u64,
    pub reset_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    pub granted: bool,
    pub refused_by: Option<u32>,
    /// `None` when refused for good (the amount is over the limit or burst), or granted.
    pub retry_after_ms: Option<u64>,
    pub states: Vec<LimitState>,
}

/// What a grant took from one limit, to end it later.
#[derive(Debug, Clone, PartialEq)]
pub struct Taken {
    pub storage_key: String,
    pub kind: Kind,
    pub amount: u64,
    pub limit: u64,
    pub period_ms: u64,
    pub on_settle: OnSettle,
    /// The hold's id among a `slots` limit's holders.
    pub hold: u64,
    /// Taken from this replica's lease of the limit (ended against the lease), not from Redis
    /// directly.
    pub leased: bool,
}

impl Taken {
    /// The change to apply to the limit when the hold ends as `ending` says.
    pub fn delta(&self, ending: Ending) -> i128 {
        delta(self.amount, self.on_settle, ending)
    }

    /// GCRA's emission interval in microseconds: the time one unit occupies.
    pub fn emission_us(&self) -> f64 {
        emission_us(self.period_ms, self.limit)
    }
}

/// The change to apply to a limit `amount` was taken from when the hold ends as `ending` says.
fn delta(amount: u64, on_settle: OnSettle, ending: Ending) -> i128 {
    let amount = i128::from(amount);
    match (ending, on_settle) {
        (Ending::Release, _) | (_, OnSettle::GiveBack) => -amount,
        (Ending::Settle(actual), OnSettle::Tokens) => i128::from(actual) - amount,
        (Ending::Settle(_) | Ending::Lapse, OnSettle::Keep) | (Ending::Lapse, OnSettle::Tokens) => 0,
    }
}

fn emission_us(period_ms: u64, limit: u64) -> f64 {
    period_ms as f64 * 1000.0 / limit.max(1) as f64
}

/// How a hold ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Settled with the tokens used (measured by the host, or given by the plugin).
    Settle(u64),
    /// The plugin gave everything back.
    Release,
    /// The request ended with the hold still open: slots are given back, the rest stays taken.
    Lapse,
}

/// A granted `acquire`: the decision and what to end later.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub decision: Decision,
    pub taken: Vec<Taken>,
    /// Whether it was taken from the shared (Redis) state rather than this process's.
    pub shared: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    #[error("the shared limits backend is unavailable")]
    Unavailable,
    #[error("invalid limits: {0}")]
    Invalid(&'static str),
}

/// Checks the shape of an `acquire` before any state is touched.
pub fn validate(asks: &[Ask]) -> Result<(), LimitsError> {
    if asks.len() > MAX_LIMITS_PER_CALL {
        return Err(LimitsError::Invalid("more than 16 limits in one call"));
    }
    for a in asks {
        let guest_key = a.key.get(a.owner_len..).unwrap_or("");
        if guest_key.is_empty() || guest_key.len() > MAX_KEY_BYTES {
            return Err(LimitsError::Invalid("a key is empty or longer than 512 bytes"));
        }
        if a.period_ms == 0 && a.kind != Kind::Month {
            return Err(LimitsError::Invalid("a period of 0 ms"));
        }
        if a.kind == Kind::Slots && a.amount > MAX_SLOTS_PER_CALL {
            return Err(LimitsError::Invalid("more than 64 slots in one call"));
        }
    }
    Ok(())
}

/// The wall clock in Unix milliseconds and microseconds. Windows and months are calendar
/// facts, so limits use wall time; the shared backend uses Redis's clock instead, so that the
/// replicas agree.
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The limits service the capability calls: local state, and shared state when configured.
#[derive(Debug, Default)]
pub struct Limits {
    local: Local,
    shared: Option<Shared>,
}

impl Limits {
    pub fn local() -> Self {
        Limits::default()
    }

    pub fn with_shared(shared: Shared) -> Self {
        Limits { local: Local::default(), shared: Some(shared) }
    }

    pub fn shared(&self) -> Option<&Shared> {
        self.shared.as_ref()
    }

    /// This process's state when it is the only one (no shared backend): then a standing plan
    /// may decide through [`Local::acquire_planned`].
    pub fn local_only(&self) -> Option<&Local> {
        self.shared.is_none().then_some(&self.local)
    }

    /// Takes every ask's amount, all or none.
    pub async fn acquire(&self, asks: &[Ask], timeout: Duration) -> Result<Grant, LimitsError> {
        validate(asks)?;
        match &self.shared {
            Some(shared) => shared.acquire(asks, timeout).await,
            None => Ok(self.local.acquire(asks, now_us())),
        }
    }

    /// Ends what a grant took.
    pub async fn end(&self, taken: &[Taken], shared: bool, ending: Ending) {
        if !self.end_now(taken, shared, ending)
            && let Some(s) = &self.shared
        {
            s.end(taken, ending).await;
        }
    }

    /// Ends a hold that needs no network at once; `false`, doing nothing, for one that must
    /// reach Redis (end it with [`Limits::end`]).
    pub fn end_now(&self, taken: &[Taken], shared: bool, ending: Ending) -> bool {
        match (&self.shared, shared) {
            (Some(s), true) => s.end_now(taken, ending),
            (Some(s), false) => {
                s.end_fallback(taken, ending, now_us());
                true
            }
            (None, _) => {
                self.local.end(taken, ending, now_us());
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(on_settle: OnSettle) -> Taken {
        Taken {
            storage_key: "k".into(),
            kind: Kind::Window,
            amount: 10,
            limit: 100,
            period_ms: 1000,
            on_settle,
            hold: 0,
            leased: false,
        }
    }

    #[test]
    fn endings_apply_each_limits_rule() {
        assert_eq!(taken(OnSettle::Tokens).delta(Ending::Settle(3)), -7);
        assert_eq!(taken(OnSettle::Tokens).delta(Ending::Settle(15)), 5);
        assert_eq!(taken(OnSettle::Keep).delta(Ending::Settle(3)), 0);
        assert_eq!(taken(OnSettle::GiveBack).delta(Ending::Settle(3)), -10);
        assert_eq!(taken(OnSettle::Keep).delta(Ending::Release), -10);
        assert_eq!(taken(OnSettle::Tokens).delta(Ending::Lapse), 0);
        assert_eq!(taken(OnSettle::GiveBack).delta(Ending::Lapse), -10);
    }

    #[test]
    fn divided_limits_keep_at_least_one() {
        let a = Ask {
            key: "p/k".into(),
            owner_len: 2,
            kind: Kind::Rate,
            amount: 1,
            limit: 10,
            period_ms: 60_000,
            burst: 1,
            on_settle: OnSettle::Keep,
        };
        let d = a.divided(3);
        assert_eq!((d.limit, d.burst), (4, 1));
        assert_eq!(a.divided(0).limit, 10);
    }
}
