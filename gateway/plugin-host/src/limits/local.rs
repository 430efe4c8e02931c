//! Limits kept in this process: exact for one replica. The same algorithm as the Redis
//! script in [`super::shared`], written once more in Rust and tested against a reference model.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Ask, Decision, Ending, Grant, Kind, LimitState, Taken, emission_us};

/// Live keys one owner may have; past it, an acquire on a new key is refused.
pub const MAX_KEYS_PER_OWNER: usize = 10_000;
/// Live keys in all; expired ones are swept when the table is full.
const MAX_KEYS: usize = 200_000;

#[derive(Debug, Clone)]
enum State {
    /// GCRA's theoretical arrival time, Unix microseconds.
    Rate {
        tat_us: f64,
    },
    Count {
        value: u64,
    },
    /// Hold id → (amount, lapses at Unix ms).
    Slots {
        held: Held,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    state: State,
    /// Unix ms after which the entry means nothing (a window over, a bucket full again).
    expires_ms: u64,
    owner_len: usize,
}

type Map<V> = HashMap<String, V, foldhash::fast::RandomState>;
/// A slots limit's holders: hold id → (amount, lapses at Unix ms).
type Held = HashMap<u64, (u64, u64), foldhash::fast::RandomState>;

#[derive(Debug, Default)]
struct Table {
    entries: Map<Entry>,
    keys_per_owner: Map<usize>,
}

impl Table {
    fn sweep(&mut self, now_ms: u64) {
        let Table { entries, keys_per_owner } = self;
        entries.retain(|key, e| {
            let live = e.expires_ms > now_ms;
            if !live && let Some(n) = key.get(..e.owner_len).and_then(|o| keys_per_owner.get_mut(o)) {
                *n = n.saturating_sub(1);
            }
            live
        });
        keys_per_owner.retain(|_, n| *n > 0);
    }

    /// Whether a new key of this owner fits.
    fn room_for(&mut self, key: &str, owner_len: usize, now_ms: u64) -> bool {
        if self.entries.get(key).is_some_and(|e| e.expires_ms > now_ms) {
            return true;
        }
        let owner = key.get(..owner_len).unwrap_or("");
        let full = |t: &Table| {
            t.keys_per_owner.get(owner).copied().unwrap_or(0) >= MAX_KEYS_PER_OWNER || t.entries.len() >= MAX_KEYS
        };
        if full(self) {
            self.sweep(now_ms);
        }
        !full(self)
    }

    fn insert(&mut self, key: String, entry: Entry) {
        if let Some(existing) = self.entries.get_mut(&key) {
            *existing = entry;
            return;
        }
        let owner = key.get(..entry.owner_len).unwrap_or("").to_owned();
        self.entries.insert(key, entry);
        *self.keys_per_owner.entry(owner).or_default() += 1;
    }
}

/// What a granted ask writes.
enum Write {
    /// The limit's new state.
    Replace(Entry),
    /// One more holder of a `slots` limit (the others are left in place, not copied).
    Hold { amount: u64, lapses_ms: u64, owner_len: usize },
}

/// The outcome of checking one ask against its current state.
struct Checked {
    state: LimitState,
    /// `Err(retry)` when refused: `Some(ms)` until it could pass, `None` never.
    verdict: Result<Write, Option<u64>>,
}

fn ceil_ms(us: f64) -> u64 {
    if us <= 0.0 { 0 } else { (us / 1000.0).ceil() as u64 }
}

/// GCRA with `burst`: an amount passes when the bucket, refilled at `limit` per `period`,
/// has room for it; taking it moves the theoretical arrival time by `amount` emission intervals.
fn check_rate(ask: &Ask, tat_us: Option<f64>, now_us: f64) -> Checked {
    let t = emission_us(ask.period_ms, ask.limit);
    let tat = tat_us.unwrap_or(now_us).max(now_us);
    let capacity = ask.burst as f64 * t;
    let remaining_at = |tat: f64| ((capacity - (tat - now_us)) / t).floor().max(0.0) as u64;
    let new_tat = tat + ask.amount as f64 * t;
    let allow_at = new_tat - capacity;
    if ask.limit == 0 || ask.amount > ask.burst {
        let state = LimitState {
            limit: ask.limit,
            remaining: remaining_at(tat).min(ask.burst),
            reset_ms: ceil_ms(tat - now_us),
        };
        return Checked { state, verdict: Err(None) };
    }
    if allow_at > now_us {
        let state = LimitState { limit: ask.limit, remaining: remaining_at(tat), reset_ms: ceil_ms(tat - now_us) };
        return Checked { state, verdict: Err(Some(ceil_ms(allow_at - now_us).max(1))) };
    }
    let expires_ms = (new_tat / 1000.0).ceil() as u64;
    Checked {
        state: LimitState { limit: ask.limit, remaining: remaining_at(new_tat), reset_ms: ceil_ms(new_tat - now_us) },
        verdict: Ok(Write::Replace(Entry {
            state: State::Rate { tat_us: new_tat },
            expires_ms,
            owner_len: ask.owner_len,
        })),
    }
}

fn check_count(ask: &Ask, value: u64, now_ms: u64) -> Checked {
    let end = ask.window_end_ms(now_ms);
    let reset_ms = end.saturating_sub(now_ms);
    let after = value.saturating_add(ask.amount);
    if after > ask.limit {
        let retry = (ask.amount <= ask.limit).then_some(reset_ms.max(1));
        let state = LimitState { limit: ask.limit, remaining: ask.limit.saturating_sub(value), reset_ms };
        return Checked { state, verdict: Err(retry) };
    }
    Checked {
        state: LimitState { limit: ask.limit, remaining: ask.limit - after, reset_ms },
        verdict: Ok(Write::Replace(Entry {
            state: State::Count { value: after },
            expires_ms: end,
            owner_len: ask.owner_len,
        })),
    }
}

/// Slots: live holds plus this amount within the limit. A refusal suggests a second, since a
/// slot frees when some request ends, which nothing here can predict.
fn check_slots(ask: &Ask, held: Option<&Held>, now_ms: u64) -> Checked {
    let in_use: u64 =
        held.into_iter().flatten().filter(|(_, (_, lapses))| *lapses > now_ms).map(|(_, (n, _))| *n).sum();
    let after = in_use.saturating_add(ask.amount);
    if after > ask.limit {
        let retry = (ask.amount <= ask.limit).then_some(1000);
        let state = LimitState { limit: ask.limit, remaining: ask.limit.saturating_sub(in_use), reset_ms: 0 };
        return Checked { state, verdict: Err(retry) };
    }
    Checked {
        state: LimitState { limit: ask.limit, remaining: ask.limit - after, reset_ms: 0 },
        verdict: Ok(Write::Hold {
            amount: ask.amount,
            lapses_ms: now_ms.saturating_add(ask.period_ms),
            owner_len: ask.owner_len,
        }),
    }
}

/// Limits in this process's memory.
#[derive(Debug, Default)]
pub struct Local {
    table: Mutex<Table>,
    next_hold: AtomicU64,
}

impl Local {
    /// Takes every ask's amount at `now_us` (Unix microseconds), all or none.
    pub fn acquire(&self, asks: &[Ask], now_us: u64) -> Grant {
        let now_ms = now_us / 1000;
        let hold = self.next_hold.fetch_add(1, Ordering::Relaxed) + 1;
        let refused = |states, index: usize, retry| Grant {
            decision: Decision { granted: false, refused_by: u32::try_from(index).ok(), retry_after_ms: retry, states },
            taken: Vec::new(),
            shared: false,
        };
        let Ok(mut table) = self.table.lock() else {
            return refused(vec![LimitState::default(); asks.len()], 0, Some(1000));
        };
        let mut states = Vec::with_capacity(asks.len());
        let mut writes = Vec::with_capacity(asks.len());
        let mut refusal: Option<(usize, Option<u64>)> = None;
        for (i, ask) in asks.iter().enumerate() {
            let key = ask.storage_key(now_ms);
            let current = table.entries.get(&key).filter(|e| e.expires_ms > now_ms).map(|e| &e.state);
            let checked = match (ask.kind, current) {
                (Kind::Rate, Some(State::Rate { tat_us })) => check_rate(ask, Some(*tat_us), now_us as f64),
                (Kind::Rate, _) => check_rate(ask, None, now_us as f64),
                (Kind::Window | Kind::Month, Some(State::Count { value })) => check_count(ask, *value, now_ms),
                (Kind::Window | Kind::Month, _) => check_count(ask, 0, now_ms),
                (Kind::Slots, Some(State::Slots { held })) => check_slots(ask, Some(held), now_ms),
                (Kind::Slots, _) => check_slots(ask, None, now_ms),
            };
            states.push(checked.state);
            match checked.verdict {
                Ok(write) => writes.push((key, write)),
                Err(retry) => {
                    refusal = refusal.or(Some((i, retry)));
                }
            }
        }
        if let Some((index, retry)) = refusal {
            return refused(states, index, retry);
        }
        // Room for new keys is checked before anything is written, so a refusal changes nothing.
        let owner_len = |w: &Write| match w {
            Write::Replace(e) => e.owner_len,
            Write::Hold { owner_len, .. } => *owner_len,
        };
        if let Some(i) = writes.iter().position(|(key, w)| !table.room_for(key, owner_len(w), now_ms)) {
            return refused(states, i, Some(1000));
        }
        let taken = asks
            .iter()
            .zip(&writes)
            .map(|(ask, (key, _))| Taken {
                storage_key: key.clone(),
                kind: ask.kind,
                amount: ask.amount,
                limit: ask.limit,
                period_ms: ask.period_ms,
                on_settle: ask.on_settle,
                hold,
            })
            .collect();
        for (key, write) in writes {
            match write {
                Write::Replace(entry) => table.insert(key, entry),
                Write::Hold { amount, lapses_ms, owner_len } => match table.entries.get_mut(&key) {
                    Some(Entry { state: State::Slots { held }, expires_ms, .. }) if *expires_ms > now_ms => {
                        held.retain(|_, (_, lapses)| *lapses > now_ms);
                        held.insert(hold, (amount, lapses_ms));
                        *expires_ms = (*expires_ms).max(lapses_ms);
                    }
                    _ => {
                        let mut held = Held::default();
                        held.insert(hold, (amount, lapses_ms));
                        table.insert(key, Entry { state: State::Slots { held }, expires_ms: lapses_ms, owner_len });
                    }
                },
            }
        }
        Grant {
            decision: Decision { granted: true, refused_by: None, retry_after_ms: None, states },
            taken,
            shared: false,
        }
    }

    /// Ends a hold at `now_us`. A window that has ended since is left alone (its key is gone or
    /// another window's); a rate or count never goes below empty.
    pub fn end(&self, taken: &[Taken], ending: Ending, now_us: u64) {
        let now_ms = now_us / 1000;
        let Ok(mut table) = self.table.lock() else { return };
        for t in taken {
            let delta = t.delta(ending);
            let Some(entry) = table.entries.get_mut(&t.storage_key).filter(|e| e.expires_ms > now_ms) else {
                continue;
            };
            match &mut entry.state {
                State::Rate { tat_us } => {
                    *tat_us += delta as f64 * t.emission_us();
                    entry.expires_ms = entry.expires_ms.max((*tat_us / 1000.0).ceil() as u64);
                }
                State::Count { value } => {
                    let v = (i128::from(*value) + delta).clamp(0, i128::from(u64::MAX));
                    *value = u64::try_from(v).unwrap_or(0);
                }
                State::Slots { held } => {
                    if delta < 0 {
                        held.remove(&t.hold);
                    }
                }
            }
        }
    }

    /// The units in use of a count or slots limit, or the bucket's debt in units for a rate
    /// (for tests and inspection).
    pub fn level(&self, storage_key: &str, now_us: u64) -> f64 {
        let now_ms = now_us / 1000;
        let Ok(table) = self.table.lock() else { return 0.0 };
        match table.entries.get(storage_key).filter(|e| e.expires_ms > now_ms).map(|e| &e.state) {
            Some(State::Count { value }) => *value as f64,
            Some(State::Slots { held }) => held.values().filter(|(_, l)| *l > now_ms).map(|(n, _)| *n as f64).sum(),
            Some(State::Rate { tat_us }) => (*tat_us - now_us as f64).max(0.0),
            None => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::OnSettle;
    use super::*;

    const OWNER: &str = "7:plugin:x/-/";

    fn ask(key: &str, kind: Kind, amount: u64, limit: u64, period_ms: u64, burst: u64) -> Ask {
        let on_settle = match kind {
            Kind::Slots => OnSettle::GiveBack,
            Kind::Rate if amount == 1 => OnSettle::Keep,
            _ => OnSettle::Tokens,
        };
        Ask { key: format!("{OWNER}{key}"), owner_len: OWNER.len(), kind, amount, limit, period_ms, burst, on_settle }
    }

    const T0: u64 = 1_796_529_600_000_000;

    #[test]
    fn gcra_spaces_requests_and_allows_the_burst() {
        let l = Local::default();
        // 600 per minute: one per 100 ms, 5 at once.
        let a = ask("rpm", Kind::Rate, 1, 600, 60_000, 5);
        for i in 0..5 {
            let g = l.acquire(std::slice::from_ref(&a), T0);
            assert!(g.decision.granted, "burst request {i}");
            assert_eq!(g.decision.states[0].remaining, 4 - i);
        }
        let refused = l.acquire(std::slice::from_ref(&a), T0);
        assert!(!refused.decision.granted);
        assert_eq!(refused.decision.retry_after_ms, Some(100));
        assert!(l.acquire(std::slice::from_ref(&a), T0 + 99_000).taken.is_empty());
        assert!(l.acquire(std::slice::from_ref(&a), T0 + 100_000).decision.granted);
    }

    #[test]
    fn gcra_admits_the_rate_over_time() {
        // Offered far above the limit for 30 s: 600/min with a burst of 1 admits 301.
        let l = Local::default();
        let a = ask("rpm", Kind::Rate, 1, 600, 60_000, 1);
        let admitted =
            (0..30_000).filter(|ms| l.acquire(std::slice::from_ref(&a), T0 + ms * 1000).decision.granted).count();
        assert_eq!(admitted, 300);
    }

    #[test]
    fn an_amount_over_the_burst_never_passes() {
        let l = Local::default();
        let a = ask("tpm", Kind::Rate, 1_001, 1_000, 60_000, 1_000);
        let g = l.acquire(&[a], T0);
        assert!(!g.decision.granted);
        assert_eq!(g.decision.retry_after_ms, None);
    }

    #[test]
    fn all_or_none() {
        let l = Local::default();
        let rpm = ask("rpm", Kind::Rate, 1, 60, 60_000, 10);
        let tpm = ask("tpm", Kind::Window, 600, 1_000, 60_000, 0);
        assert!(l.acquire(&[rpm.clone(), tpm.clone()], T0).decision.granted);
        let g = l.acquire(&[rpm.clone(), tpm.clone()], T0);
        assert_eq!(g.decision.refused_by, Some(1));
        // The refused call took nothing from the first limit: 9 requests of burst are left.
        let g = l.acquire(&[rpm], T0);
        assert_eq!(g.decision.states[0].remaining, 8);
    }

    #[test]
    fn settle_replaces_tokens_and_frees_slots() {
        let l = Local::default();
        let tpm = ask("tpm", Kind::Window, 500, 1_000, 60_000, 0);
        let slot = ask("conc", Kind::Slots, 1, 1, 600_000, 0);
        let g = l.acquire(&[tpm.clone(), slot.clone()], T0);
        assert!(g.decision.granted);
        assert!(!l.acquire(std::slice::from_ref(&slot), T0).decision.granted, "one slot");
        l.end(&g.taken, Ending::Settle(120), T0);
        assert_eq!(l.level(&tpm.storage_key(T0 / 1000), T0), 120.0);
        assert_eq!(l.level(&slot.storage_key(T0 / 1000), T0), 0.0);
        let g = l.acquire(std::slice::from_ref(&slot), T0);
        assert!(g.decision.granted);
        l.end(&g.taken, Ending::Lapse, T0);
        assert_eq!(l.level(&slot.storage_key(T0 / 1000), T0), 0.0, "a lapsed hold frees its slot");
    }

    #[test]
    fn slots_of_a_lost_holder_lapse() {
        let l = Local::default();
        let slot = ask("conc", Kind::Slots, 1, 1, 1_000, 0);
        assert!(l.acquire(std::slice::from_ref(&slot), T0).decision.granted);
        assert!(!l.acquire(std::slice::from_ref(&slot), T0 + 999_000).decision.granted);
        assert!(l.acquire(std::slice::from_ref(&slot), T0 + 1_000_000).decision.granted);
    }

    #[test]
    fn months_reset_on_the_first() {
        let l = Local::default();
        let budget = ask("budget", Kind::Month, 1_000, 1_000, 0, 0);
        // 2026-12-31T23:59:59Z, then 2027-01-01T00:00:00Z.
        let dec31 = 1_798_761_599_000_000;
        let g = l.acquire(std::slice::from_ref(&budget), dec31);
        assert!(g.decision.granted);
        assert_eq!(g.decision.states[0].reset_ms, 1_000);
        assert!(!l.acquire(std::slice::from_ref(&budget), dec31).decision.granted);
        assert!(l.acquire(&[budget], dec31 + 1_000_000).decision.granted);
    }

    #[test]
    fn an_owner_cannot_exhaust_the_table() {
        let l = Local::default();
        for i in 0..MAX_KEYS_PER_OWNER {
            assert!(l.acquire(&[ask(&i.to_string(), Kind::Window, 1, 1, 60_000, 0)], T0).decision.granted);
        }
        assert!(!l.acquire(&[ask("more", Kind::Window, 1, 1, 60_000, 0)], T0).decision.granted);
        let other = "7:plugin:y/-/";
        let mut a = ask("k", Kind::Window, 1, 1, 60_000, 0);
        a.key = format!("{other}k");
        a.owner_len = other.len();
        assert!(l.acquire(&[a], T0).decision.granted);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Acquire { tokens: u64, slot: bool },
        Settle { which: usize, actual: u64 },
        Release { which: usize },
        Lapse { which: usize },
        Advance { ms: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1u64..400, any::<bool>()).prop_map(|(tokens, slot)| Op::Acquire { tokens, slot }),
            (0usize..8, 0u64..800).prop_map(|(which, actual)| Op::Settle { which, actual }),
            (0usize..8).prop_map(|which| Op::Release { which }),
            (0usize..8).prop_map(|which| Op::Lapse { which }),
            (1u64..20_000).prop_map(|ms| Op::Advance { ms }),
        ]
    }

    proptest! {
        /// Over any interleaving of acquire, settle, release and lapse: a window's count is
        /// exactly what the open and settled holds in it add up to (never negative, nothing
        /// leaked), slots in use equal the open holds, and once everything is given back,
        /// nothing is in use.
        #[test]
        fn holds_never_leak_or_go_negative(ops in proptest::collection::vec(op(), 1..120)) {
            let l = Local::default();
            let tpm = ask("tpm", Kind::Window, 0, 2_000, 60_000, 0);
            let conc = ask("conc", Kind::Slots, 1, 4, 3_600_000, 0);
            let mut now = T0;
            // Open holds: (grant, window key, slot?); settled amounts per window key.
            let mut open: Vec<(Grant, String, bool)> = Vec::new();
            let mut settled: HashMap<String, u64> = HashMap::new();
            for op in ops {
                match op {
                    Op::Acquire { tokens, slot } => {
                        let mut asks = vec![Ask { amount: tokens, ..tpm.clone() }];
                        if slot { asks.push(conc.clone()); }
                        let g = l.acquire(&asks, now);
                        if g.decision.granted {
                            open.push((g, tpm.storage_key(now / 1000), slot));
                        }
                    }
                    Op::Settle { which, actual } if which < open.len() => {
                        let (g, key, _) = open.remove(which);
                        l.end(&g.taken, Ending::Settle(actual), now);
                        *settled.entry(key).or_default() += actual;
                    }
                    Op::Release { which } if which < open.len() => {
                        let (g, _, _) = open.remove(which);
                        l.end(&g.taken, Ending::Release, now);
                    }
                    Op::Lapse { which } if which < open.len() => {
                        let (g, key, _) = open.remove(which);
                        l.end(&g.taken, Ending::Lapse, now);
                        *settled.entry(key).or_default() += g.taken[0].amount;
                    }
                    Op::Advance { ms } => now += ms * 1000,
                    _ => {}
                }
                let key = tpm.storage_key(now / 1000);
                let expected = settled.get(&key).copied().unwrap_or(0)
                    + open.iter().filter(|(_, k, _)| *k == key).map(|(g, _, _)| g.taken[0].amount).sum::<u64>();
                prop_assert_eq!(l.level(&key, now), expected as f64);
                let slots = open.iter().filter(|(_, _, s)| *s).count();
                prop_assert_eq!(l.level(&conc.storage_key(0), now), slots as f64);
                prop_assert!(slots <= 4);
            }
            for (g, _, _) in open.drain(..) {
                l.end(&g.taken, Ending::Release, now);
            }
            prop_assert_eq!(l.level(&conc.storage_key(0), now), 0.0);
        }

        /// GCRA against a reference: in any interval of length d, what passes is at most
        /// burst + d / T units (T the emission interval), and a steady offer above the rate
        /// gets the rate.
        #[test]
        fn gcra_never_exceeds_burst_plus_rate(
            limit in 1u64..2_000,
            burst_frac in 1u64..100,
            gaps in proptest::collection::vec(0u64..5_000, 1..300),
            amounts in proptest::collection::vec(1u64..50, 300),
        ) {
            let l = Local::default();
            let burst = (limit * burst_frac / 100).max(50);
            let a = ask("r", Kind::Rate, 1, limit, 60_000, burst);
            let t_us = 60_000_000.0 / limit as f64;
            let mut now = T0;
            let mut passed: Vec<(u64, u64)> = Vec::new();
            for (gap, amount) in gaps.iter().zip(&amounts) {
                now += gap * 1000;
                if l.acquire(&[Ask { amount: *amount, ..a.clone() }], now).decision.granted {
                    passed.push((now, *amount));
                }
            }
            for (i, (start, _)) in passed.iter().enumerate() {
                let mut sum = 0u64;
                for (at, amount) in &passed[i..] {
                    sum += amount;
                    let allowed = burst as f64 + (*at - start) as f64 / t_us;
                    prop_assert!(sum as f64 <= allowed + 1e-6, "{} units in {} us, allowed {}", sum, at - start, allowed);
                }
            }
        }
    }
}
