//! Leased quota: each replica takes small slices of a limit from Redis and decides from what it
//! holds, so that most decisions need no round trip. Units are taken in Redis before they are
//! used, so the replicas together never admit more than the limit; what a replica holds and does
//! not use is kept from the others until it is returned (idle for [`LeaseSettings::idle`]), so
//! the error is under-admission of at most `replicas × slice` per limit for that long. A slice
//! is at most [`slice_cap`]: 50 ms of a rate (an eighth of its burst at most), a sixteenth of a
//! window or month, a sixteenth of a concurrency limit (32 slots at most). A limit whose slice
//! could not hold more than the request itself is decided exactly, a round trip per request, so
//! low limits keep their exact behaviour.
//!
//! This module is the bookkeeping only: what a decision can take locally, what it must ask
//! Redis for, and what goes back. [`super::shared`] talks to Redis.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use super::{Ask, Kind, LimitState, Taken, emission_us};

/// How much of a rate one slice may be: the units the limit allows in this many milliseconds.
const SLICE_MS: u64 = 50;
/// A rate's slice is at most this fraction of its burst.
const RATE_BURST_DIVISOR: u64 = 8;
/// A window's, month's or concurrency limit's slice is at most this fraction of the limit.
const COUNT_DIVISOR: u64 = 16;
/// The most slots one lease holds: each is a member of a sorted set, renewed while held.
const MAX_SLOT_SLICE: u64 = 32;

/// How leases behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSettings {
    /// A lease unused this long goes back to Redis.
    pub idle: Duration,
    /// Leased slots lapse in Redis this long after their last renewal (the replica renews them
    /// every third of it while it lives), so a replica that crashed frees them this soon.
    pub slot_ttl: Duration,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings { idle: Duration::from_millis(250), slot_ttl: Duration::from_secs(10) }
    }
}

/// The most a replica's lease of `ask`'s limit may hold. A lease is used only when this is
/// more than the request's own amount; otherwise the limit is decided exactly.
pub fn slice_cap(ask: &Ask) -> u64 {
    match ask.kind {
        Kind::Rate => {
            let per_slice = u128::from(ask.limit) * u128::from(SLICE_MS) / u128::from(ask.period_ms.max(1));
            u64::try_from(per_slice).unwrap_or(u64::MAX).min(ask.burst / RATE_BURST_DIVISOR)
        }
        Kind::Window | Kind::Month => ask.limit / COUNT_DIVISOR,
        Kind::Slots => (ask.limit / COUNT_DIVISOR).min(MAX_SLOT_SLICE),
    }
}

/// One limit's lease in this replica.
#[derive(Debug)]
struct Lease {
    kind: Kind,
    /// Units taken in Redis that no request holds.
    free: u64,
    /// Slots: the ids of the members this replica holds in Redis (free or held by a request).
    members: VecDeque<u64>,
    /// The id the next slot member gets.
    next_member: u64,
    /// Units served since the last refill: the next slice is twice as many (up to the cap), so
    /// a busy limit's slices grow and a quiet one's stay at the request's size.
    served: u64,
    /// A refill is on its way: other decisions that find the lease short are decided exactly,
    /// so that one replica holds one slice at a time.
    refilling: bool,
    last_used_ms: u64,
    /// What Redis said was left (beyond every lease) at the last refill, when, and its reset.
    seen_remaining: u64,
    seen_at_ms: u64,
    seen_reset_ms: u64,
    cap: u64,
    emission_us: f64,
    burst: u64,
    /// The limit the lease was taken under (limit, period, burst): when the tenant's settings
    /// change it, what the lease holds goes back and it starts again.
    terms: (u64, u64, u64),
}

impl Lease {
    fn new(ask: &Ask, now_ms: u64) -> Self {
        Lease {
            kind: ask.kind,
            free: 0,
            members: VecDeque::new(),
            next_member: 1,
            served: 0,
            refilling: false,
            last_used_ms: now_ms,
            seen_remaining: 0,
            seen_at_ms: now_ms,
            seen_reset_ms: 0,
            cap: slice_cap(ask),
            emission_us: emission_us(ask.period_ms, ask.limit),
            burst: ask.burst,
            terms: (ask.limit, ask.period_ms, ask.burst),
        }
    }

    /// Takes `ask`'s terms if they changed: what was free goes back, under the old terms (a
    /// rate's units are worth the old emission interval); slots held by requests stay.
    fn retune(&mut self, key: &str, ask: &Ask) -> Option<Change> {
        if self.terms == (ask.limit, ask.period_ms, ask.burst) || self.refilling {
            return None;
        }
        let free = std::mem::take(&mut self.free);
        let change = (free > 0).then(|| give_back(key, self, free));
        self.cap = slice_cap(ask);
        self.emission_us = emission_us(ask.period_ms, ask.limit);
        self.burst = ask.burst;
        self.terms = (ask.limit, ask.period_ms, ask.burst);
        self.served = 0;
        change
    }

    /// The limit's state as this replica sees it: what Redis last said was left, plus what this
    /// lease still holds (and, for a rate, what has refilled since), so approximate by what the
    /// other replicas took or returned since.
    fn state(&self, ask: &Ask, now_ms: u64, wall_ms: u64) -> LimitState {
        let elapsed = now_ms.saturating_sub(self.seen_at_ms);
        match self.kind {
            Kind::Rate => {
                let refilled = (elapsed as f64 * 1000.0 / self.emission_us.max(f64::MIN_POSITIVE)) as u64;
                LimitState {
                    limit: ask.limit,
                    remaining: self.seen_remaining.saturating_add(self.free).saturating_add(refilled).min(self.burst),
                    reset_ms: self.seen_reset_ms.saturating_sub(elapsed),
                }
            }
            Kind::Window | Kind::Month => LimitState {
                limit: ask.limit,
                remaining: self.seen_remaining.saturating_add(self.free).min(ask.limit),
                reset_ms: ask.window_end_ms(wall_ms).saturating_sub(wall_ms),
            },
            Kind::Slots => LimitState {
                limit: ask.limit,
                remaining: self.seen_remaining.saturating_add(self.free).min(ask.limit),
                reset_ms: 0,
            },
        }
    }
}

/// What a decision does with one of its limits.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Served from this replica's lease.
    Local { state: LimitState },
    /// Asked of Redis: at least `need`, up to `want` for a lease. `took_free` units of the
    /// lease went to this request already; `first` numbers new slot members.
    Remote { need: u64, want: u64, first: u64, took_free: u64, leased: bool },
}

/// What Redis gave one remote step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    pub units: u64,
    pub remaining: u64,
    pub reset_ms: u64,
}

/// A change to send to Redis: units given back or charged, or slot members to drop or renew.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Move a rate's TAT by `units` emission intervals (`emission_us` each); negative gives back.
    Rate { key: String, units: i128, emission_us: f64 },
    /// Add `units` to a window's or month's count; negative gives back.
    Count { key: String, units: i128 },
    /// Drop these members of this replica's lease.
    Drop { key: String, members: Vec<u64> },
    /// Drop these members of a request's own hold (`prefix:n`), taken exactly.
    HeldDrop { key: String, prefix: String, members: Vec<u64> },
    /// Renew these slot members for another `ttl_ms`.
    Renew { key: String, members: Vec<u64>, ttl_ms: u64 },
}

impl Change {
    pub fn key(&self) -> &str {
        match self {
            Change::Rate { key, .. }
            | Change::Count { key, .. }
            | Change::Drop { key, .. }
            | Change::HeldDrop { key, .. }
            | Change::Renew { key, .. } => key,
        }
    }
}

/// This replica's leases, by Redis key, and the changes waiting to be sent.
#[derive(Debug, Default)]
pub struct Leases {
    table: Mutex<HashMap<String, Lease, foldhash::fast::RandomState>>,
    pending: Mutex<Vec<Change>>,
}

impl Leases {
    /// Decides each ask from its lease where it can (taking the units at once); the others are
    /// steps for Redis. `now_ms` is this process's monotonic clock, `wall_ms` the wall clock.
    pub fn plan(&self, asks: &[Ask], keys: &[String], now_ms: u64, wall_ms: u64) -> Vec<Step> {
        let Ok(mut table) = self.table.lock() else {
            return asks.iter().map(exact).collect();
        };
        let mut retuned = Vec::new();
        let steps = asks
            .iter()
            .zip(keys)
            .map(|(ask, key)| {
                let cap = slice_cap(ask);
                if cap <= ask.amount {
                    return exact(ask);
                }
                // Looked up before inserting: the key is cloned only for a new lease.
                if !table.contains_key(key) {
                    table.insert(key.clone(), Lease::new(ask, now_ms));
                }
                let Some(lease) = table.get_mut(key) else { return exact(ask) };
                retuned.extend(lease.retune(key, ask));
                if lease.free >= ask.amount {
                    lease.free -= ask.amount;
                    lease.served = lease.served.saturating_add(ask.amount);
                    lease.last_used_ms = now_ms;
                    return Step::Local { state: lease.state(ask, now_ms, wall_ms) };
                }
                if lease.refilling {
                    return exact(ask);
                }
                lease.refilling = true;
                let took_free = std::mem::take(&mut lease.free);
                let need = ask.amount - took_free;
                let want = lease.served.saturating_mul(2).min(cap).max(need);
                Step::Remote { need, want, first: lease.next_member, took_free, leased: true }
            })
            .collect();
        drop(table);
        for change in retuned {
            self.push(change);
        }
        steps
    }

    /// Redis granted the remote steps (`granted` in step order, `None` for local ones): the
    /// leases keep what the request does not use. Returns each ask's state after the grant.
    pub fn granted(
        &self,
        asks: &[Ask],
        keys: &[String],
        steps: &[Step],
        granted: &[Option<Granted>],
        now_ms: u64,
        wall_ms: u64,
    ) -> Vec<LimitState> {
        let Ok(mut table) = self.table.lock() else {
            return steps.iter().zip(granted).map(|(s, g)| fallback_state(s, g)).collect();
        };
        let mut states = Vec::with_capacity(asks.len());
        for (((ask, key), step), grant) in asks.iter().zip(keys).zip(steps).zip(granted) {
            let state = match (step, grant) {
                (Step::Remote { need, first, leased: true, .. }, Some(g)) => match table.get_mut(key) {
                    Some(lease) => {
                        lease.refilling = false;
                        lease.free = lease.free.saturating_add(g.units.saturating_sub(*need));
                        lease.served = ask.amount;
                        lease.last_used_ms = now_ms;
                        if lease.kind == Kind::Slots {
                            lease.members.extend(*first..first.saturating_add(g.units));
                            lease.next_member = lease.next_member.max(first.saturating_add(g.units));
                        }
                        lease.seen_remaining = g.remaining;
                        lease.seen_reset_ms = g.reset_ms;
                        lease.seen_at_ms = now_ms;
                        lease.state(ask, now_ms, wall_ms)
                    }
                    None => LimitState { limit: ask.limit, remaining: g.remaining, reset_ms: g.reset_ms },
                },
                (step, grant) => fallback_state(step, grant),
            };
            states.push(LimitState { limit: ask.limit, ..state });
        }
        states
    }

    /// The decision did not happen (refused, or Redis failed): what its steps took from the
    /// leases goes back to them.
    pub fn undo(&self, asks: &[Ask], keys: &[String], steps: &[Step]) {
        let Ok(mut table) = self.table.lock() else { return };
        for ((ask, key), step) in asks.iter().zip(keys).zip(steps) {
            let Some(lease) = table.get_mut(key) else { continue };
            match step {
                Step::Local { .. } => {
                    lease.free = lease.free.saturating_add(ask.amount);
                    lease.served = lease.served.saturating_sub(ask.amount);
                }
                Step::Remote { took_free, leased: true, .. } => {
                    lease.free = lease.free.saturating_add(*took_free);
                    lease.refilling = false;
                }
                Step::Remote { .. } => {}
            }
        }
    }

    /// Ends a leased hold: what comes back is credited to the lease, an overrun is taken from
    /// it; what the lease cannot take or give is sent to Redis with the next batch.
    pub fn end(&self, taken: &Taken, delta: i128, now_ms: u64) {
        if delta == 0 {
            return;
        }
        let Ok(mut table) = self.table.lock() else { return };
        let Some(lease) = table.get_mut(&taken.storage_key) else {
            // The lease went back meanwhile: settle in Redis directly.
            drop(table);
            self.push(change_of(taken, delta));
            return;
        };
        lease.last_used_ms = now_ms;
        if delta < 0 {
            let back = u64::try_from(-delta).unwrap_or(u64::MAX);
            lease.free = lease.free.saturating_add(back);
            // A lease keeps at most two slices: what reservations gave back beyond that goes
            // back to Redis, so that many settling requests cannot hoard the limit.
            let keep = lease.cap.saturating_mul(2);
            if lease.free > keep {
                let excess = lease.free - keep;
                lease.free = keep;
                let change = give_back(&taken.storage_key, lease, excess);
                drop(table);
                self.push(change);
            }
        } else {
            let over = u64::try_from(delta).unwrap_or(u64::MAX);
            let from_lease = over.min(lease.free);
            lease.free -= from_lease;
            let rest = over - from_lease;
            drop(table);
            if rest > 0 {
                self.push(change_of(taken, i128::from(rest)));
            }
        }
    }

    /// The settlements waiting to be sent.
    pub fn take_pending(&self) -> Vec<Change> {
        self.pending.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default()
    }

    fn push(&self, change: Change) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.push(change);
        }
    }

    /// The changes to send now: every lease idle for `idle_ms` gives back what it holds free
    /// (and is forgotten once it holds nothing), slot members are renewed when `renew` is set,
    /// and the settlings waiting are taken.
    pub fn due(&self, now_ms: u64, idle_ms: u64, renew_ttl_ms: Option<u64>) -> Vec<Change> {
        let mut changes = self.take_pending();
        let Ok(mut table) = self.table.lock() else { return changes };
        table.retain(|key, lease| {
            if lease.refilling {
                return true;
            }
            let idle = now_ms.saturating_sub(lease.last_used_ms) >= idle_ms;
            if idle && lease.free > 0 {
                let free = lease.free;
                lease.free = 0;
                changes.push(give_back(key, lease, free));
            }
            if let Some(ttl_ms) = renew_ttl_ms
                && !lease.members.is_empty()
            {
                changes.push(Change::Renew {
                    key: key.clone(),
                    members: lease.members.iter().copied().collect(),
                    ttl_ms,
                });
            }
            !(idle && lease.free == 0 && lease.members.is_empty())
        });
        changes
    }

    /// Everything free in every lease, given back (at shutdown). Slots held by requests still
    /// running stay until their leases lapse.
    pub fn drain(&self) -> Vec<Change> {
        let mut changes = self.take_pending();
        let Ok(mut table) = self.table.lock() else { return changes };
        for (key, lease) in table.iter_mut() {
            if lease.free > 0 {
                let free = std::mem::take(&mut lease.free);
                changes.push(give_back(key, lease, free));
            }
        }
        changes
    }

    /// Units this replica holds free for `key` (for tests and inspection).
    pub fn free(&self, key: &str) -> u64 {
        self.table.lock().ok().and_then(|t| t.get(key).map(|l| l.free)).unwrap_or(0)
    }
}

/// The step of a limit decided exactly: the request's amount from Redis.
pub fn exact(ask: &Ask) -> Step {
    Step::Remote { need: ask.amount, want: ask.amount, first: 1, took_free: 0, leased: false }
}

fn fallback_state(step: &Step, grant: &Option<Granted>) -> LimitState {
    match (step, grant) {
        (Step::Local { state }, _) => *state,
        (_, Some(g)) => LimitState { limit: 0, remaining: g.remaining, reset_ms: g.reset_ms },
        (_, None) => LimitState::default(),
    }
}

/// `units` of `lease` back to Redis (slots: that many of its members dropped).
fn give_back(key: &str, lease: &mut Lease, units: u64) -> Change {
    let units_i = -i128::from(units);
    match lease.kind {
        Kind::Rate => Change::Rate { key: key.to_owned(), units: units_i, emission_us: lease.emission_us },
        Kind::Window | Kind::Month => Change::Count { key: key.to_owned(), units: units_i },
        Kind::Slots => {
            let n = usize::try_from(units).unwrap_or(usize::MAX).min(lease.members.len());
            Change::Drop { key: key.to_owned(), members: lease.members.drain(..n).collect() }
        }
    }
}

/// A settlement sent straight to Redis (its lease is gone). Slots never get here: a slots lease
/// is kept while it holds members.
fn change_of(taken: &Taken, delta: i128) -> Change {
    match taken.kind {
        Kind::Rate => Change::Rate { key: taken.storage_key.clone(), units: delta, emission_us: taken.emission_us() },
        Kind::Window | Kind::Month | Kind::Slots => Change::Count { key: taken.storage_key.clone(), units: delta },
    }
}

#[cfg(test)]
mod tests {
    use super::super::OnSettle;
    use super::*;

    fn ask(kind: Kind, amount: u64, limit: u64, burst: u64) -> Ask {
        Ask {
            key: "o/k".into(),
            owner_len: 2,
            kind,
            amount,
            limit,
            period_ms: 60_000,
            burst,
            on_settle: OnSettle::Tokens,
        }
    }

    #[test]
    fn slices_follow_the_rate_and_low_limits_are_exact() {
        // 600/min with a burst of 5: half a unit in 50 ms, so every request is exact.
        assert_eq!(slice_cap(&ask(Kind::Rate, 1, 600, 5)), 0);
        // 1.2M/min: 1,000 in 50 ms, but at most an eighth of a 2,000 burst.
        assert_eq!(slice_cap(&ask(Kind::Rate, 1, 1_200_000, 2_000)), 250);
        assert_eq!(slice_cap(&ask(Kind::Month, 1, 1_000_000, 0)), 62_500);
        assert_eq!(slice_cap(&ask(Kind::Slots, 1, 8, 0)), 0);
        assert_eq!(slice_cap(&ask(Kind::Slots, 1, 100_000, 0)), 32);
    }

    #[test]
    fn a_lease_serves_locally_grows_with_use_and_goes_back_when_idle() {
        let leases = Leases::default();
        let a = ask(Kind::Window, 1, 16_000, 0);
        let keys = vec!["k".to_owned()];
        let Step::Remote { need: 1, want: 1, leased: true, .. } = leases.plan(std::slice::from_ref(&a), &keys, 0, 0)[0]
        else {
            panic!("a new lease asks for the request alone")
        };
        let steps = leases.plan(std::slice::from_ref(&a), &keys, 0, 0);
        assert!(matches!(steps[0], Step::Remote { leased: false, .. }), "exact while a refill is on its way");
        leases.undo(std::slice::from_ref(&a), &keys, &steps);
        let first = vec![Step::Remote { need: 1, want: 1, first: 1, took_free: 0, leased: true }];
        leases.granted(
            std::slice::from_ref(&a),
            &keys,
            &first,
            &[Some(Granted { units: 1, remaining: 100, reset_ms: 0 })],
            0,
            0,
        );
        // Short again: the next slice is twice what the last one served.
        let steps = leases.plan(std::slice::from_ref(&a), &keys, 1, 1);
        assert!(matches!(steps[0], Step::Remote { need: 1, want: 2, .. }), "{steps:?}");
        leases.granted(
            std::slice::from_ref(&a),
            &keys,
            &steps,
            &[Some(Granted { units: 2, remaining: 97, reset_ms: 0 })],
            1,
            1,
        );
        assert_eq!(leases.free("k"), 1);
        let Step::Local { state } = leases.plan(std::slice::from_ref(&a), &keys, 2, 2)[0] else { panic!("local") };
        assert_eq!(state.remaining, 97, "Redis's remaining plus the lease's free units");
        assert!(leases.due(100, 250, None).is_empty(), "not idle yet");
        leases.end(&taken(&a, "k"), -1, 100);
        assert_eq!(leases.due(400, 250, None), vec![Change::Count { key: "k".into(), units: -1 }]);
        assert!(leases.due(400, 250, None).is_empty(), "forgotten once empty");
    }

    fn taken(a: &Ask, key: &str) -> Taken {
        Taken {
            storage_key: key.into(),
            kind: a.kind,
            amount: a.amount,
            limit: a.limit,
            period_ms: a.period_ms,
            on_settle: a.on_settle,
            hold: 0,
            leased: true,
        }
    }

    #[test]
    fn overruns_come_from_the_lease_then_from_redis() {
        let leases = Leases::default();
        let a = ask(Kind::Window, 10, 16_000, 0);
        let keys = vec!["k".to_owned()];
        let steps = leases.plan(std::slice::from_ref(&a), &keys, 0, 0);
        leases.granted(
            std::slice::from_ref(&a),
            &keys,
            &steps,
            &[Some(Granted { units: 15, remaining: 0, reset_ms: 0 })],
            0,
            0,
        );
        assert_eq!(leases.free("k"), 5);
        leases.end(&taken(&a, "k"), 8, 0);
        assert_eq!(leases.free("k"), 0);
        assert_eq!(leases.due(0, 250, None), vec![Change::Count { key: "k".into(), units: 3 }]);
    }
}
