//! The `counters` capability's in-process backend: fixed-window counters with reserve, settle
//! and release, keyed by [`Owner`] so that no plugin or tenant reaches another's counters, and
//! bounded per owner so that none can exhaust the table for the others.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::namespace::{Namespace, Owner};

/// Live counter keys one owner may have; past it, a reservation on a new key is refused.
pub const MAX_KEYS_PER_OWNER: usize = 10_000;
/// Live counter keys in all; expired windows are swept when the map is full.
const MAX_KEYS: usize = 200_000;
/// Reservations not yet settled or released, in all; those whose window is over are swept
/// first (settling them would be a no-op anyway).
const MAX_RESERVATIONS: usize = 200_000;

#[derive(Debug)]
struct Window {
    started: Instant,
    length: Duration,
    value: u64,
    /// The length of the owner's prefix at the start of the key.
    owner_len: usize,
}

impl Window {
    fn live(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.started) < self.length
    }
}

#[derive(Debug)]
struct Reservation {
    /// Who may settle or release it: the namespace that made it.
    namespace: Namespace,
    key: String,
    started: Instant,
    ends: Instant,
    amount: u64,
}

/// A reservation's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserved {
    pub id: u64,
    pub granted: bool,
    pub remaining: u64,
    pub reset: Duration,
}

#[derive(Debug, Default)]
struct Tables {
    windows: HashMap<String, Window>,
    /// Live keys per owner prefix.
    keys_per_owner: HashMap<String, usize>,
}

impl Tables {
    fn sweep(&mut self, now: Instant) {
        let Tables { windows, keys_per_owner } = self;
        windows.retain(|key, w| {
            let live = w.live(now);
            if !live && let Some(n) = key.get(..w.owner_len).and_then(|owner| keys_per_owner.get_mut(owner)) {
                *n = n.saturating_sub(1);
            }
            live
        });
        keys_per_owner.retain(|_, n| *n > 0);
    }
}

/// Fixed-window counters with reserve / settle / release.
#[derive(Debug, Default)]
pub struct Counters {
    tables: Mutex<Tables>,
    reservations: Mutex<HashMap<u64, Reservation>>,
    next_id: AtomicU64,
}

impl Counters {
    /// Reserves `amount` against `limit` on `owner`'s `key` in a fixed window of `window`;
    /// refused without change if it would exceed the limit, or if the owner already has
    /// [`MAX_KEYS_PER_OWNER`] live keys and this is a new one.
    pub fn reserve(&self, owner: &Owner, key: &str, amount: u64, limit: u64, window: Duration) -> Reserved {
        let now = Instant::now();
        let refused = |remaining, reset| Reserved { id: 0, granted: false, remaining, reset };
        let full = owner.key(key);
        let owner_len = full.len() - key.len();
        let Ok(mut tables) = self.tables.lock() else { return refused(0, window) };
        if !tables.windows.contains_key(&full) {
            let prefix = owner.prefix();
            let mine = tables.keys_per_owner.get(&prefix).copied().unwrap_or(0);
            if mine >= MAX_KEYS_PER_OWNER || tables.windows.len() >= MAX_KEYS {
                tables.sweep(now);
            }
            let mine = tables.keys_per_owner.get(&prefix).copied().unwrap_or(0);
            if mine >= MAX_KEYS_PER_OWNER || tables.windows.len() >= MAX_KEYS {
                return refused(0, window);
            }
            *tables.keys_per_owner.entry(prefix).or_default() += 1;
        }
        let fresh = Window { started: now, length: window, value: 0, owner_len };
        let w = tables.windows.entry(full.clone()).or_insert(fresh);
        if !w.live(now) {
            *w = Window { started: now, length: window, value: 0, owner_len };
        }
        let reset = w.length.saturating_sub(now.saturating_duration_since(w.started));
        let after = w.value.saturating_add(amount);
        if after > limit {
            return refused(limit.saturating_sub(w.value), reset);
        }
        let (started, ends) = (w.started, w.started + w.length);
        let before = w.value;
        w.value = after;
        drop(tables);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let recorded = self.reservations.lock().is_ok_and(|mut r| {
            if r.len() >= MAX_RESERVATIONS {
                r.retain(|_, res| now < res.ends);
            }
            r.len() < MAX_RESERVATIONS && {
                let namespace = owner.namespace.clone();
                r.insert(id, Reservation { namespace, key: full.clone(), started, ends, amount });
                true
            }
        });
        if !recorded {
            // Nothing could settle it later: take it back rather than hold it for the window.
            if let Ok(mut tables) = self.tables.lock()
                && let Some(w) = tables.windows.get_mut(&full)
                && w.started == started
            {
                w.value = before.max(w.value.saturating_sub(amount));
            }
            return refused(limit.saturating_sub(before), reset);
        }
        Reserved { id, granted: true, remaining: limit - after, reset }
    }

    /// Replaces reservation `id` by `actual`; a no-op once its window is over, or when `id`
    /// was made in another namespace.
    pub fn settle(&self, namespace: &Namespace, id: u64, actual: u64) {
        self.adjust(namespace, id, Some(actual));
    }

    /// Gives reservation `id` back (see [`Counters::settle`]).
    pub fn release(&self, namespace: &Namespace, id: u64) {
        self.adjust(namespace, id, None);
    }

    fn adjust(&self, namespace: &Namespace, id: u64, actual: Option<u64>) {
        let Some(r) = self.reservations.lock().ok().and_then(|mut m| match m.get(&id) {
            Some(r) if r.namespace == *namespace => m.remove(&id),
            _ => None,
        }) else {
            return;
        };
        let Ok(mut tables) = self.tables.lock() else { return };
        if let Some(w) = tables.windows.get_mut(&r.key)
            && w.started == r.started
        {
            w.value = w.value.saturating_sub(r.amount).saturating_add(actual.unwrap_or(0));
        }
    }

    /// The current value of `owner`'s `key` in its window.
    pub fn get(&self, owner: &Owner, key: &str) -> u64 {
        let Ok(tables) = self.tables.lock() else { return 0 };
        let now = Instant::now();
        tables.windows.get(&owner.key(key)).filter(|w| w.live(now)).map_or(0, |w| w.value)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn owner(ns: &str, tenant: Option<&str>) -> Owner {
        Owner { namespace: Namespace::plugin(ns), tenant: tenant.map(Arc::from) }
    }

    #[test]
    fn reserve_settle_release_in_a_window() {
        let c = Counters::default();
        let o = owner("p", Some("acme"));
        let ns = &o.namespace;
        let w = Duration::from_secs(60);
        let a = c.reserve(&o, "k", 6, 10, w);
        assert!(a.granted);
        assert_eq!(a.remaining, 4);
        let refused = c.reserve(&o, "k", 5, 10, w);
        assert!(!refused.granted);
        assert_eq!(c.get(&o, "k"), 6);
        c.settle(ns, a.id, 2);
        assert_eq!(c.get(&o, "k"), 2);
        let b = c.reserve(&o, "k", 5, 10, w);
        c.release(ns, b.id);
        assert_eq!(c.get(&o, "k"), 2);
        c.release(ns, b.id);
        assert_eq!(c.get(&o, "k"), 2, "a reservation is given back once");
    }

    #[test]
    fn owners_do_not_share_counters_or_reservations() {
        let c = Counters::default();
        let w = Duration::from_secs(60);
        let acme = owner("p", Some("acme"));
        let evil = owner("p", Some("evil"));
        let other_plugin = owner("q", Some("acme"));
        let r = c.reserve(&acme, "rpm", 10, 10, w);
        assert!(r.granted);
        assert_eq!(c.get(&evil, "rpm"), 0);
        assert_eq!(c.get(&other_plugin, "rpm"), 0);
        assert!(c.reserve(&evil, "rpm", 10, 10, w).granted, "evil's counter is its own");
        // Another namespace cannot release acme's reservation by guessing its id.
        c.release(&other_plugin.namespace, r.id);
        assert_eq!(c.get(&acme, "rpm"), 10);
    }

    #[test]
    fn an_owner_cannot_exhaust_the_table() {
        let c = Counters::default();
        let w = Duration::from_secs(60);
        let evil = owner("p", Some("evil"));
        for i in 0..MAX_KEYS_PER_OWNER {
            assert!(c.reserve(&evil, &i.to_string(), 1, 1, w).granted);
        }
        assert!(!c.reserve(&evil, "one-more", 1, 1, w).granted);
        assert!(c.reserve(&owner("p", Some("acme")), "k", 1, 1, w).granted);
    }

    #[test]
    fn windows_reset() {
        let c = Counters::default();
        let o = owner("p", None);
        assert!(c.reserve(&o, "k", 1, 1, Duration::from_millis(1)).granted);
        std::thread::sleep(Duration::from_millis(3));
        assert!(c.reserve(&o, "k", 1, 1, Duration::from_millis(1)).granted);
    }
}
