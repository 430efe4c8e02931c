//! What the host capabilities are backed by: in-process counters and cache shared by every
//! plugin of this gateway (the rate-limit and cache issues put Redis behind the same calls), and
//! the embedder's transport for the network capabilities ([`crate::io`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::io::PluginIo;

/// Entries the in-memory cache keeps at most; beyond that, expired entries are swept and then
/// the put is dropped.
const MAX_CACHE_ENTRIES: usize = 10_000;
/// Live counter keys at most; expired windows are swept when the map is full.
const MAX_COUNTER_KEYS: usize = 100_000;

#[derive(Debug)]
struct Window {
    started: Instant,
    length: Duration,
    value: u64,
}

#[derive(Debug)]
struct Reservation {
    key: String,
    started: Instant,
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

/// Fixed-window counters with reserve / settle / release.
#[derive(Debug, Default)]
pub struct Counters {
    windows: Mutex<HashMap<String, Window>>,
    reservations: Mutex<HashMap<u64, Reservation>>,
    next_id: AtomicU64,
}

impl Counters {
    pub fn reserve(&self, key: &str, amount: u64, limit: u64, window: Duration) -> Reserved {
        let now = Instant::now();
        let Ok(mut windows) = self.windows.lock() else {
            return Reserved { id: 0, granted: false, remaining: 0, reset: window };
        };
        if windows.len() >= MAX_COUNTER_KEYS && !windows.contains_key(key) {
            windows.retain(|_, w| now.duration_since(w.started) < w.length);
        }
        let w = windows.entry(key.to_owned()).or_insert(Window { started: now, length: window, value: 0 });
        if now.duration_since(w.started) >= w.length {
            *w = Window { started: now, length: window, value: 0 };
        }
        let reset = w.length.saturating_sub(now.duration_since(w.started));
        let after = w.value.saturating_add(amount);
        if after > limit {
            return Reserved { id: 0, granted: false, remaining: limit.saturating_sub(w.value), reset };
        }
        w.value = after;
        let started = w.started;
        drop(windows);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        if let Ok(mut r) = self.reservations.lock() {
            r.insert(id, Reservation { key: key.to_owned(), started, amount });
        }
        Reserved { id, granted: true, remaining: limit - after, reset }
    }

    /// Replaces reservation `id` by `actual`; a no-op once its window is over.
    pub fn settle(&self, id: u64, actual: u64) {
        self.adjust(id, Some(actual));
    }

    pub fn release(&self, id: u64) {
        self.adjust(id, None);
    }

    fn adjust(&self, id: u64, actual: Option<u64>) {
        let Some(r) = self.reservations.lock().ok().and_then(|mut m| m.remove(&id)) else { return };
        let Ok(mut windows) = self.windows.lock() else { return };
        if let Some(w) = windows.get_mut(&r.key)
            && w.started == r.started
        {
            w.value = w.value.saturating_sub(r.amount).saturating_add(actual.unwrap_or(0));
        }
    }

    pub fn get(&self, key: &str) -> u64 {
        let Ok(windows) = self.windows.lock() else { return 0 };
        windows.get(key).filter(|w| w.started.elapsed() < w.length).map_or(0, |w| w.value)
    }
}

/// A cached value and when it expires.
type Entry = (Arc<[u8]>, Instant);

/// A bounded byte cache with TTLs.
#[derive(Debug, Default)]
pub struct Cache {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Cache {
    pub fn get(&self, key: &str) -> Option<Arc<[u8]>> {
        let entries = self.entries.lock().ok()?;
        entries.get(key).filter(|(_, expires)| Instant::now() < *expires).map(|(v, _)| Arc::clone(v))
    }

    pub fn put(&self, key: &str, value: &[u8], ttl: Duration) {
        let Ok(mut entries) = self.entries.lock() else { return };
        let now = Instant::now();
        if entries.len() >= MAX_CACHE_ENTRIES && !entries.contains_key(key) {
            entries.retain(|_, (_, expires)| now < *expires);
            if entries.len() >= MAX_CACHE_ENTRIES {
                return;
            }
        }
        entries.insert(key.to_owned(), (Arc::from(value), now + ttl));
    }
}

/// Everything the capabilities share across plugins and calls.
#[derive(Debug)]
pub struct HostServices {
    pub counters: Counters,
    pub cache: Cache,
    /// Tenant name → settings as JSON, for `config.tenant`.
    tenants: ArcSwap<HashMap<String, String>>,
    /// The zero of `clock.monotonic-now`.
    pub epoch: Instant,
    /// The transport of `http` and `embeddings`, once the embedder provides one.
    io: OnceLock<Arc<dyn PluginIo>>,
}

impl Default for HostServices {
    fn default() -> Self {
        HostServices {
            counters: Counters::default(),
            cache: Cache::default(),
            tenants: ArcSwap::from_pointee(HashMap::new()),
            epoch: Instant::now(),
            io: OnceLock::new(),
        }
    }
}

impl HostServices {
    /// Replaces the tenant settings plugins can read.
    pub fn set_tenants(&self, tenants: HashMap<String, String>) {
        self.tenants.store(Arc::new(tenants));
    }

    pub fn tenant(&self, name: &str) -> Option<String> {
        self.tenants.load().get(name).cloned()
    }

    /// Gives `http` and `embeddings` their transport. Set once, before plugins need it; a second
    /// call is ignored and returns `false`.
    pub fn set_io(&self, io: Arc<dyn PluginIo>) -> bool {
        self.io.set(io).is_ok()
    }

    pub fn io(&self) -> Option<Arc<dyn PluginIo>> {
        self.io.get().cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_settle_release_in_a_window() {
        let c = Counters::default();
        let w = Duration::from_secs(60);
        let a = c.reserve("k", 6, 10, w);
        assert!(a.granted);
        assert_eq!(a.remaining, 4);
        let refused = c.reserve("k", 5, 10, w);
        assert!(!refused.granted);
        assert_eq!(c.get("k"), 6);
        c.settle(a.id, 2);
        assert_eq!(c.get("k"), 2);
        let b = c.reserve("k", 5, 10, w);
        c.release(b.id);
        assert_eq!(c.get("k"), 2);
        c.release(b.id);
        assert_eq!(c.get("k"), 2, "a reservation is given back once");
    }

    #[test]
    fn windows_reset() {
        let c = Counters::default();
        assert!(c.reserve("k", 1, 1, Duration::from_millis(1)).granted);
        std::thread::sleep(Duration::from_millis(3));
        assert!(c.reserve("k", 1, 1, Duration::from_millis(1)).granted);
    }

    #[test]
    fn cache_expires() {
        let c = Cache::default();
        c.put("a", b"1", Duration::from_secs(60));
        c.put("b", b"2", Duration::ZERO);
        assert_eq!(c.get("a").as_deref(), Some(&b"1"[..]));
        assert!(c.get("b").is_none());
    }
}
