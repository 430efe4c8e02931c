use std::collections::HashMap;

use proptest::prelude::*;

use super::super::{LimitState, OnSettle};
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

/// The four limits of the built-in plugin, small enough to be reached; amounts set per request.
fn four() -> [Ask; 4] {
    [
        // Amounts of 1 where they pick the ending (`ask` keeps a request's 1 and gives a slot back).
        ask("rpm", Kind::Rate, 1, 600, 60_000, 5),
        ask("tpm", Kind::Window, 0, 5_000, 10_000, 0),
        ask("conc", Kind::Slots, 1, 3, 3_600_000, 0),
        ask("month", Kind::Month, 0, 60_000, 0, 0),
    ]
}

fn with_amounts(asks: &[Ask], amounts: &[u64]) -> Vec<Ask> {
    asks.iter().zip(amounts).map(|(a, n)| Ask { amount: *n, ..a.clone() }).collect()
}

/// A hold taken either way.
#[derive(Debug)]
enum Took {
    Keyed(Grant),
    Planned(TakenCells),
}

/// Acquires as a standing plan does: through the cells, by key when they cannot decide.
fn acquire_as_planned(l: &Local, asks: &[Ask], amounts: &[u64], cells: &Cells, now: u64) -> (bool, Option<Took>) {
    match l.acquire_planned(asks, amounts, cells, now) {
        Planned::Granted { taken, .. } => (true, Some(Took::Planned(taken))),
        Planned::Refused => (false, None),
        Planned::Unresolved => {
            let g = l.acquire(&with_amounts(asks, amounts), now);
            (g.decision.granted, g.decision.granted.then_some(Took::Keyed(g)))
        }
    }
}

fn end_as_planned(l: &Local, asks: &[Ask], took: &Took, ending: Ending, now: u64) {
    match took {
        Took::Keyed(g) => l.end(&g.taken, ending, now),
        Took::Planned(t) => l.end_planned(asks, t, ending, now),
    }
}

#[test]
fn planned_decisions_use_the_cells_and_roll_windows_over() {
    let l = Local::default();
    let w = [ask("w", Kind::Window, 0, 10, 1_000, 0)];
    let cells = Cells::new(1);
    assert!(matches!(l.acquire_planned(&w, &[4], &cells, T0), Planned::Unresolved), "no state yet");
    assert!(l.acquire(&with_amounts(&w, &[4]), T0).decision.granted);
    let Planned::Granted { states, taken } = l.acquire_planned(&w, &[4], &cells, T0) else { panic!("granted") };
    assert_eq!(states[0], LimitState { limit: 10, remaining: 2, reset_ms: 1_000 });
    assert!(matches!(l.acquire_planned(&w, &[4], &cells, T0), Planned::Refused), "8 of 10 taken");
    l.end_planned(&w, &taken, Ending::Settle(1), T0);
    assert_eq!(l.level(&w[0].storage_key(T0 / 1000), T0), 5.0);
    // The next window has no state until the keyed path makes it.
    let next = T0 + 1_000_000;
    assert!(matches!(l.acquire_planned(&w, &[4], &cells, next), Planned::Unresolved));
    assert!(l.acquire(&with_amounts(&w, &[4]), next).decision.granted);
    assert!(matches!(l.acquire_planned(&w, &[4], &cells, next), Planned::Granted { .. }));
    assert_eq!(l.level(&w[0].storage_key(next / 1000), next), 8.0);
}

#[test]
fn a_swept_cell_is_found_again_by_key() {
    let l = Local::default();
    let r = [ask("r", Kind::Rate, 0, 60, 60_000, 1)];
    let cells = Cells::new(1);
    assert!(l.acquire(&with_amounts(&r, &[1]), T0).decision.granted);
    let Planned::Granted { taken, .. } = l.acquire_planned(&r, &[1], &cells, T0 + 1_000_000) else {
        panic!("granted a second later")
    };
    // Fill the owner with keys, all but one outliving the rate's entry; once both are over, one
    // more key sweeps them and takes one of the freed slots.
    for i in 1..MAX_KEYS_PER_OWNER {
        let period = if i == 1 { 5_000 } else { 3_600_000 };
        assert!(l.acquire(&[ask(&i.to_string(), Kind::Window, 1, 1, period, 0)], T0).decision.granted);
    }
    let later = T0 + 10_000_000;
    assert!(l.acquire(&[ask("new", Kind::Window, 1, 1, 3_600_000, 0)], later).decision.granted);
    assert_eq!(l.level(&r[0].storage_key(0), later), 0.0);
    l.end_planned(&r, &taken, Ending::Release, later);
    let new_key = ask("new", Kind::Window, 1, 1, 3_600_000, 0).storage_key(later / 1000);
    assert_eq!(l.level(&new_key, later), 1.0, "the slot's new key is left alone");
    assert!(matches!(l.acquire_planned(&r, &[1], &cells, later), Planned::Unresolved), "gone: made again by key");
    assert!(l.acquire(&with_amounts(&r, &[1]), later).decision.granted);
    let again = l.acquire_planned(&r, &[1], &cells, later);
    assert!(matches!(again, Planned::Refused), "burst of 1 taken: {again:?}");
}

#[derive(Debug, Clone)]
enum Step {
    Acquire { tokens: u64 },
    End { which: usize, how: u8, actual: u64 },
    Advance { ms: u64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1u64..3_000).prop_map(|tokens| Step::Acquire { tokens }),
        3 => (0usize..6, 0u8..3, 0u64..4_000).prop_map(|(which, how, actual)| Step::End { which, how, actual }),
        3 => (1u64..4_000).prop_map(|ms| Step::Advance { ms }),
        1 => (1u64..10).prop_map(|days| Step::Advance { ms: days * 86_400_000 }),
    ]
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

    /// A standing plan's path and the keyed path are one algorithm on one table: the same
    /// requests, ended the same way, get the same decisions and leave the same state, across
    /// windows, months, refusals, slots and every kind of ending.
    #[test]
    fn planned_and_keyed_paths_decide_alike(steps in proptest::collection::vec(step(), 1..150)) {
        let asks = four();
        let (keyed, planned, cells) = (Local::default(), Local::default(), Cells::new(asks.len()));
        let mut now = T0;
        let mut open: Vec<(Grant, Took)> = Vec::new();
        for s in steps {
            match s {
                Step::Acquire { tokens } => {
                    let amounts = [1, tokens, 1, tokens];
                    let k = keyed.acquire(&with_amounts(&asks, &amounts), now);
                    let (granted, took) = acquire_as_planned(&planned, &asks, &amounts, &cells, now);
                    prop_assert_eq!(k.decision.granted, granted);
                    if let Some(took) = took {
                        open.push((k, took));
                    }
                }
                Step::End { which, how, actual } if which < open.len() => {
                    let (k, took) = open.remove(which);
                    let ending = [Ending::Settle(actual), Ending::Release, Ending::Lapse][usize::from(how)];
                    keyed.end(&k.taken, ending, now);
                    end_as_planned(&planned, &asks, &took, ending, now);
                }
                Step::Advance { ms } => now += ms * 1000,
                Step::End { .. } => {}
            }
            for a in &asks {
                let key = a.storage_key(now / 1000);
                prop_assert_eq!(keyed.level(&key, now), planned.level(&key, now), "{}", key);
            }
        }
    }
}
