//! The `cache` capability's in-process backend: a byte cache with TTLs, keyed by [`Owner`] so
//! that no plugin or tenant reads another's entries, and bounded per owner (entries and bytes)
//! so that none can crowd the others out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::namespace::Owner;

/// Largest value one entry may hold.
pub const MAX_VALUE_BYTES: usize = 4 << 20;
/// What one owner may keep.
pub const MAX_ENTRIES_PER_OWNER: usize = 1_000;
pub const MAX_BYTES_PER_OWNER: usize = 16 << 20;
/// What the whole cache keeps.
const MAX_ENTRIES: usize = 20_000;
const MAX_BYTES: usize = 256 << 20;

#[derive(Debug)]
struct Entry {
    value: Arc<[u8]>,
    expires: Instant,
    owner: String,
}

#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    entries: usize,
    bytes: usize,
}

#[derive(Debug, Default)]
struct Table {
    entries: HashMap<String, Entry>,
    per_owner: HashMap<String, Usage>,
    bytes: usize,
}

impl Table {
    fn remove(&mut self, key: &str) {
        if let Some(old) = self.entries.remove(key) {
            self.bytes = self.bytes.saturating_sub(old.value.len());
            if let Some(u) = self.per_owner.get_mut(&old.owner) {
                u.entries = u.entries.saturating_sub(1);
                u.bytes = u.bytes.saturating_sub(old.value.len());
                if u.entries == 0 {
                    self.per_owner.remove(&old.owner);
                }
            }
        }
    }

    /// Drops expired entries: every one, or only `owner`'s.
    fn sweep(&mut self, now: Instant, owner: Option<&str>) {
        let expired: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.expires <= now && owner.is_none_or(|o| e.owner == o))
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            self.remove(&key);
        }
    }

    fn fits(&self, owner: &str, size: usize) -> bool {
        let mine = self.per_owner.get(owner).copied().unwrap_or_default();
        mine.entries < MAX_ENTRIES_PER_OWNER
            && mine.bytes + size <= MAX_BYTES_PER_OWNER
            && self.entries.len() < MAX_ENTRIES
            && self.bytes + size <= MAX_BYTES
    }
}

/// A bounded byte cache with TTLs.
#[derive(Debug, Default)]
pub struct Cache {
    table: Mutex<Table>,
}

impl Cache {
    pub fn get(&self, owner: &Owner, key: &str) -> Option<Arc<[u8]>> {
        let table = self.table.lock().ok()?;
        let entry = table.entries.get(&owner.key(key))?;
        (Instant::now() < entry.expires).then(|| Arc::clone(&entry.value))
    }

    /// Stores `value` under `owner`'s `key` for `ttl`. Returns `false` when it is refused: too
    /// large, or the owner (or the cache) is full even after expired entries are dropped.
    pub fn put(&self, owner: &Owner, key: &str, value: &[u8], ttl: Duration) -> bool {
        if value.len() > MAX_VALUE_BYTES {
            return false;
        }
        let Ok(mut table) = self.table.lock() else { return false };
        let now = Instant::now();
        let full = owner.key(key);
        let prefix = owner.prefix();
        // A replaced entry's room is the new one's.
        table.remove(&full);
        if !table.fits(&prefix, value.len()) {
            table.sweep(now, Some(&prefix));
            if !table.fits(&prefix, value.len()) {
                table.sweep(now, None);
            }
            if !table.fits(&prefix, value.len()) {
                return false;
            }
        }
        let usage = table.per_owner.entry(prefix.clone()).or_default();
        usage.entries += 1;
        usage.bytes += value.len();
        table.bytes += value.len();
        table.entries.insert(full, Entry { value: Arc::from(value), expires: now + ttl, owner: prefix });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::Namespace;

    fn owner(ns: &str, tenant: Option<&str>) -> Owner {
        Owner { namespace: Namespace::plugin(ns), tenant: tenant.map(Arc::from) }
    }

    #[test]
    fn entries_expire() {
        let c = Cache::default();
        let o = owner("p", None);
        assert!(c.put(&o, "a", b"1", Duration::from_secs(60)));
        assert!(c.put(&o, "b", b"2", Duration::ZERO));
        assert_eq!(c.get(&o, "a").as_deref(), Some(&b"1"[..]));
        assert!(c.get(&o, "b").is_none());
    }

    #[test]
    fn owners_do_not_share_entries() {
        let c = Cache::default();
        let acme = owner("p", Some("acme"));
        assert!(c.put(&acme, "answer", b"acme-private-answer", Duration::from_secs(60)));
        assert!(c.get(&owner("p", Some("evil")), "answer").is_none());
        assert!(c.get(&owner("q", Some("acme")), "answer").is_none());
        assert!(c.get(&owner("p", None), "answer").is_none());
    }

    #[test]
    fn an_owner_cannot_crowd_out_the_others() {
        let c = Cache::default();
        let evil = owner("p", Some("evil"));
        let ttl = Duration::from_secs(60);
        for i in 0..MAX_ENTRIES_PER_OWNER {
            assert!(c.put(&evil, &i.to_string(), b"x", ttl));
        }
        assert!(!c.put(&evil, "one-more", b"x", ttl));
        // Replacing an entry it has is still fine.
        assert!(c.put(&evil, "0", b"y", ttl));
        let big = vec![0u8; MAX_VALUE_BYTES];
        let hog = owner("p", Some("hog"));
        let fitting = MAX_BYTES_PER_OWNER / MAX_VALUE_BYTES;
        for i in 0..fitting {
            assert!(c.put(&hog, &i.to_string(), &big, ttl));
        }
        assert!(!c.put(&hog, "more", &big, ttl));
        assert!(c.put(&owner("p", Some("acme")), "k", b"v", ttl));
        assert!(!c.put(&owner("p", Some("acme")), "huge", &vec![0u8; MAX_VALUE_BYTES + 1], ttl));
    }
}
