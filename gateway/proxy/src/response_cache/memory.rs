//! The in-process backend: a bounded W-TinyLFU cache (moka) weighed in bytes, each entry with
//! its own time to live. TinyLFU admits a new entry only when it is likely to be asked for more
//! often than the one it would evict, so a flood of one-off requests (one tenant's, say) cannot
//! wash out the entries that are hit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::notification::RemovalCause;
use moka::sync::Cache;

use super::answer::CachedAnswer;
use super::key::{EntryKey, PurgeScope};
use super::metrics::CacheMetrics;

/// What an entry costs besides its answer and its key's names: the cache's own bookkeeping (its
/// map, its LRU and write-order nodes, the entry's expiry timer), the key and the shared
/// pointers. Measured with `cargo bench -p sluice-proxy --bench response_cache`, which prints the
/// resident size per entry beside the weight counted.
const ENTRY_OVERHEAD: usize = 512;

#[derive(Debug)]
pub struct Stored {
    pub answer: Arc<CachedAnswer>,
    pub ttl: Duration,
    /// The entry's share of the bound: its serialised size plus the key.
    pub weight: u32,
}

pub struct MemoryStore {
    entries: Cache<Arc<EntryKey>, Arc<Stored>>,
}

struct PerEntryTtl;

impl moka::Expiry<Arc<EntryKey>, Arc<Stored>> for PerEntryTtl {
    fn expire_after_create(&self, _key: &Arc<EntryKey>, value: &Arc<Stored>, _created_at: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

impl MemoryStore {
    pub fn new(max_bytes: usize, metrics: CacheMetrics) -> Self {
        let entries = Cache::builder()
            .max_capacity(u64::try_from(max_bytes).unwrap_or(u64::MAX))
            .weigher(|_key, value: &Arc<Stored>| value.weight)
            .expire_after(PerEntryTtl)
            .support_invalidation_closures()
            .eviction_listener(move |_key, _value, cause| {
                let cause = match cause {
                    RemovalCause::Expired => "expired",
                    RemovalCause::Size => "size",
                    // Replaced by a newer answer, or purged: counted by the purge itself.
                    RemovalCause::Replaced | RemovalCause::Explicit => return,
                };
                metrics.evicted(cause);
            })
            .build();
        MemoryStore { entries }
    }

    pub fn get(&self, key: &EntryKey) -> Option<Arc<CachedAnswer>> {
        // `Cache` is keyed by `Arc<EntryKey>`, which borrows as `EntryKey`.
        self.entries.get(key).map(|s| Arc::clone(&s.answer))
    }

    pub fn put(&self, key: EntryKey, answer: Arc<CachedAnswer>, ttl: Duration, size: usize) {
        let weight = u32::try_from(size + key.namespace.len() + key.tenant.len() + key.model.len() + ENTRY_OVERHEAD)
            .unwrap_or(u32::MAX);
        self.entries.insert(Arc::new(key), Arc::new(Stored { answer, ttl, weight }));
    }

    /// Removes the entries in `scope`; returns how many there were.
    pub fn purge(&self, scope: &PurgeScope) -> u64 {
        let count = self.entries.iter().filter(|(k, _)| k.in_scope(scope)).count();
        let scope = scope.clone();
        // Only fails when invalidation closures were not enabled at build time.
        let _ = self.entries.invalidate_entries_if(move |k, _| k.in_scope(&scope));
        count as u64
    }

    /// Entries and bytes held now (after pending maintenance).
    pub fn size(&self) -> (u64, u64) {
        self.entries.run_pending_tasks();
        (self.entries.entry_count(), self.entries.weighted_size())
    }
}

#[cfg(test)]
mod tests {
    use prometheus::Registry;

    use super::*;
    use crate::response_cache::answer::{AnswerKind, TokenUsage};

    fn answer(text: &str) -> Arc<CachedAnswer> {
        Arc::new(CachedAnswer {
            kind: AnswerKind::Chat,
            model: "m".into(),
            system_fingerprint: None,
            choices: vec![crate::response_cache::answer::CachedChoice {
                index: 0,
                role: Some("assistant".into()),
                content: [text].into_iter().collect(),
                reasoning: Default::default(),
                finish_reason: Some("stop".into()),
            }],
            usage: TokenUsage { prompt: 1, completion: 1 },
            body: None,
            stop_sequence: None,
            envelope: None,
            stored_at_ms: 0,
            worker_ms: 0,
        })
    }

    fn key(tenant: &str, i: u32) -> EntryKey {
        let mut digest = [0u8; 32];
        digest[..4].copy_from_slice(&i.to_be_bytes());
        EntryKey { namespace: Arc::from("plugin:cache"), tenant: Arc::from(tenant), model: Arc::from("m"), digest }
    }

    #[test]
    fn a_flood_of_unique_entries_stays_within_the_bound() {
        let metrics = CacheMetrics::new(&Registry::new()).unwrap();
        let store = MemoryStore::new(1 << 20, metrics);
        let text = "x".repeat(4_000);
        for i in 0..5_000 {
            store.put(key("acme", i), answer(&text), Duration::from_secs(60), 4_100);
        }
        let (entries, bytes) = store.size();
        assert!(bytes <= 1 << 20, "{bytes} bytes held");
        assert!(entries > 0 && entries < 5_000, "{entries} entries");
    }

    #[test]
    fn purges_remove_only_their_scope() {
        let store = MemoryStore::new(16 << 20, CacheMetrics::new(&Registry::new()).unwrap());
        for i in 0..10 {
            store.put(key("acme", i), answer("a"), Duration::from_secs(60), 100);
            store.put(key("globex", i), answer("g"), Duration::from_secs(60), 100);
        }
        store.size();
        let removed = store.purge(&PurgeScope { tenant: Some("acme".into()), ..PurgeScope::default() });
        assert_eq!(removed, 10);
        assert!(store.get(&key("acme", 3)).is_none());
        assert!(store.get(&key("globex", 3)).is_some());
        assert_eq!(store.size().0, 10);
    }

    #[test]
    fn an_entry_lives_for_its_own_ttl() {
        let store = MemoryStore::new(16 << 20, CacheMetrics::new(&Registry::new()).unwrap());
        store.put(key("acme", 1), answer("short"), Duration::from_millis(1), 100);
        store.put(key("acme", 2), answer("long"), Duration::from_secs(600), 100);
        std::thread::sleep(Duration::from_millis(20));
        assert!(store.get(&key("acme", 1)).is_none(), "expired");
        assert!(store.get(&key("acme", 2)).is_some());
    }
}
