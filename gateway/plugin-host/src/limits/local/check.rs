//! One limit checked against its current state: what it would say, and what taking the amount
//! writes. The same algorithm as the Redis script in [`super::super::shared`].

use super::super::{Ask, Kind, LimitState, emission_us};
use super::table::{Entry, Held, State};

/// What a granted ask writes.
pub(super) enum Write {
    /// The limit's new state.
    Replace(Entry),
    /// One more holder of a `slots` limit (the others are left in place, not copied).
    Hold { amount: u64, lapses_ms: u64, owner_len: usize },
}

impl Write {
    pub fn owner_len(&self) -> usize {
        match self {
            Write::Replace(e) => e.owner_len,
            Write::Hold { owner_len, .. } => *owner_len,
        }
    }

    /// Writes into `entry`, the current entry of the limit's key if it has one.
    pub fn apply(self, entry: Option<&mut Entry>, hold: u64, now_ms: u64) -> Option<Entry> {
        match self {
            Write::Replace(new) => match entry {
                Some(e) => {
                    *e = new;
                    None
                }
                None => Some(new),
            },
            Write::Hold { amount, lapses_ms, owner_len } => match entry {
                Some(Entry { state: State::Slots { held }, expires_ms, .. }) if *expires_ms > now_ms => {
                    held.sweep(now_ms);
                    held.insert(hold, amount, lapses_ms);
                    *expires_ms = (*expires_ms).max(lapses_ms);
                    None
                }
                other => {
                    let mut held = Held::default();
                    held.insert(hold, amount, lapses_ms);
                    let new = Entry { state: State::Slots { held }, expires_ms: lapses_ms, owner_len };
                    match other {
                        Some(e) => {
                            *e = new;
                            None
                        }
                        None => Some(new),
                    }
                }
            },
        }
    }
}

/// The outcome of checking one ask against its current state.
pub(super) struct Checked {
    pub state: LimitState,
    /// `Err(retry)` when refused: `Some(ms)` until it could pass, `None` never.
    pub verdict: Result<Write, Option<u64>>,
}

/// Checks `amount` of `ask` (whose own `amount` is not read) against `current`, the state of
/// its key when live.
pub(super) fn check(ask: &Ask, amount: u64, current: Option<&State>, now_us: u64) -> Checked {
    let now_ms = now_us / 1000;
    match (ask.kind, current) {
        (Kind::Rate, Some(State::Rate { tat_us })) => check_rate(ask, amount, Some(*tat_us), now_us as f64),
        (Kind::Rate, _) => check_rate(ask, amount, None, now_us as f64),
        (Kind::Window | Kind::Month, Some(State::Count { value })) => check_count(ask, amount, *value, now_ms),
        (Kind::Window | Kind::Month, _) => check_count(ask, amount, 0, now_ms),
        (Kind::Slots, Some(State::Slots { held })) => check_slots(ask, amount, Some(held), now_ms),
        (Kind::Slots, _) => check_slots(ask, amount, None, now_ms),
    }
}

/// Applies an ending's change to a live entry: a rate or count never goes below empty.
pub(super) fn end(entry: &mut Entry, delta: i128, emission_us: f64, hold: u64) {
    match &mut entry.state {
        State::Rate { tat_us } => {
            *tat_us += delta as f64 * emission_us;
            entry.expires_ms = entry.expires_ms.max((*tat_us / 1000.0).ceil() as u64);
        }
        State::Count { value } => {
            let v = (i128::from(*value) + delta).clamp(0, i128::from(u64::MAX));
            *value = u64::try_from(v).unwrap_or(0);
        }
        State::Slots { held } => {
            if delta < 0 {
                held.remove(hold);
            }
        }
    }
}

fn ceil_ms(us: f64) -> u64 {
    if us <= 0.0 { 0 } else { (us / 1000.0).ceil() as u64 }
}

/// GCRA with `burst`: an amount passes when the bucket, refilled at `limit` per `period`,
/// has room for it; taking it moves the theoretical arrival time by `amount` emission intervals.
fn check_rate(ask: &Ask, amount: u64, tat_us: Option<f64>, now_us: f64) -> Checked {
    let t = emission_us(ask.period_ms, ask.limit);
    let tat = tat_us.unwrap_or(now_us).max(now_us);
    let capacity = ask.burst as f64 * t;
    let remaining_at = |tat: f64| ((capacity - (tat - now_us)) / t).floor().max(0.0) as u64;
    let new_tat = tat + amount as f64 * t;
    let allow_at = new_tat - capacity;
    if ask.limit == 0 || amount > ask.burst {
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

fn check_count(ask: &Ask, amount: u64, value: u64, now_ms: u64) -> Checked {
    let end = ask.window_end_ms(now_ms);
    let reset_ms = end.saturating_sub(now_ms);
    let after = value.saturating_add(amount);
    if after > ask.limit {
        let retry = (amount <= ask.limit).then_some(reset_ms.max(1));
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
fn check_slots(ask: &Ask, amount: u64, held: Option<&Held>, now_ms: u64) -> Checked {
    let in_use = held.map_or(0, |h| h.in_use(now_ms));
    let after = in_use.saturating_add(amount);
    if after > ask.limit {
        let retry = (amount <= ask.limit).then_some(1000);
        let state = LimitState { limit: ask.limit, remaining: ask.limit.saturating_sub(in_use), reset_ms: 0 };
        return Checked { state, verdict: Err(retry) };
    }
    Checked {
        state: LimitState { limit: ask.limit, remaining: ask.limit - after, reset_ms: 0 },
        verdict: Ok(Write::Hold { amount, lapses_ms: now_ms.saturating_add(ask.period_ms), owner_len: ask.owner_len }),
    }
}
