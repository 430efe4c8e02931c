//! [`SemanticIndex`]: approximate nearest neighbours per namespace, bounded, with eviction the
//! caller can follow.
//!
//! A namespace is an opaque string the caller builds (tenant and model, say). Each has its own
//! graph, so a lookup can only ever return entries inserted under the same namespace: isolation
//! by construction, not by a filter on a shared graph. The graph is USearch's HNSW (connectivity
//! 16, 64 candidates explored per insert and per search by default), which removes entries and
//! reuses their slots, so eviction needs no rebuild.
//!
//! Locking: the map of namespaces is read-locked only long enough to clone one namespace's
//! handle; each namespace has its own read-write lock (lookups share it, writes take it), so
//! lookups in different namespaces never wait for each other. One mutex orders all entries by
//! age for the index-wide bound; only writes take it, and always last.

mod namespace;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::SemanticError;
use crate::guard::{self, Mismatch};
use namespace::State;

/// The caller's name for an entry: the exact cache's key, so evictions map straight back.
pub type EntryId = [u8; 32];

/// Bounds and HNSW parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexConfig {
    /// Entries one namespace keeps; inserting past it evicts the namespace's oldest.
    pub max_entries_per_namespace: usize,
    /// Entries all namespaces keep together; inserting past it evicts the oldest anywhere.
    pub max_entries: usize,
    /// Neighbours a search returns at most (each is then checked by the guard).
    pub candidates: usize,
    /// HNSW links per node (M).
    pub connectivity: usize,
    /// Candidates explored when inserting (efConstruction).
    pub expansion_add: usize,
    /// Candidates explored when searching (ef). On the lookup bench's 100,000 n-gram vectors, 64
    /// finds 96% of the neighbours above [`crate::DEFAULT_THRESHOLD`] that an exact search finds;
    /// 32 finds 91% in a little over half the time.
    pub expansion_search: usize,
    /// Searches that can run at once in one namespace; USearch fails a search beyond it, and the
    /// cache should count that as a miss.
    pub search_threads: usize,
}

impl Default for IndexConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(4, usize::from);
        Self {
            max_entries_per_namespace: 100_000,
            max_entries: 1_000_000,
            candidates: 4,
            connectivity: 16,
            expansion_add: 64,
            expansion_search: 64,
            search_threads: (cores * 4).max(16),
        }
    }
}

impl IndexConfig {
    fn validate(&self) -> Result<(), SemanticError> {
        let positive = [
            (self.max_entries_per_namespace, "max_entries_per_namespace must be at least 1"),
            (self.max_entries, "max_entries must be at least 1"),
            (self.candidates, "candidates must be at least 1"),
            (self.expansion_add, "expansion_add must be at least 1"),
            (self.expansion_search, "expansion_search must be at least 1"),
            (self.search_threads, "search_threads must be at least 1"),
        ];
        if let Some((_, why)) = positive.iter().find(|(n, _)| *n == 0) {
            return Err(SemanticError::Config(why));
        }
        if self.connectivity < 2 {
            return Err(SemanticError::Config("connectivity must be at least 2"));
        }
        Ok(())
    }
}

/// A cached request near the query.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: EntryId,
    /// Cosine similarity to the query, in [-1, 1].
    pub similarity: f32,
    /// The request text stored with the entry, for the guard.
    pub text: Arc<str>,
}

/// An entry the index dropped to stay within its bounds; the caller drops the matching exact
/// cache entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evicted {
    pub namespace: Arc<str>,
    pub id: EntryId,
}

/// What [`SemanticIndex::lookup`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// The most similar candidate that passed the guard.
    Hit(Candidate),
    /// Candidates were above the threshold but the guard rejected them all: the most similar,
    /// and why it was rejected.
    Rejected { candidate: Candidate, mismatch: Mismatch },
    /// Nothing above the threshold.
    Miss,
}

/// What [`SemanticIndex::purge`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Purged {
    pub namespaces: usize,
    pub entries: usize,
}

/// Sizes, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexStats {
    pub namespaces: usize,
    pub entries: usize,
    /// Graph, vectors, bookkeeping and stored texts (estimated for all but the graph).
    pub bytes: usize,
}

struct Namespace {
    state: RwLock<State>,
}

/// Approximate nearest-neighbour search over cached requests' embeddings, one graph per
/// namespace. `Send + Sync`; share it behind an `Arc`.
pub struct SemanticIndex {
    config: IndexConfig,
    namespaces: RwLock<HashMap<Arc<str>, Arc<Namespace>>>,
    /// Every entry's graph key (which grows with each insert) and namespace: the index-wide age
    /// order for `max_entries`.
    ages: Mutex<BTreeMap<u64, Arc<str>>>,
    next_key: AtomicU64,
}

// A lock is only poisoned by a panic inside it, and every critical section here leaves the
// state consistent before anything that could panic, so the data is still good.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(lock: &Mutex<T>) -> MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `vector` scaled to unit length, or why it cannot be.
fn unit_vector(vector: &[f32]) -> Result<Vec<f32>, SemanticError> {
    if vector.is_empty() {
        return Err(SemanticError::EmptyVector);
    }
    if vector.iter().any(|x| !x.is_finite()) {
        return Err(SemanticError::NonFinite);
    }
    let norm = vector.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return Err(SemanticError::ZeroVector);
    }
    Ok(vector.iter().map(|x| (f64::from(*x) / norm) as f32).collect())
}

fn check_threshold(threshold: f32) -> Result<(), SemanticError> {
    if (-1.0..=1.0).contains(&threshold) { Ok(()) } else { Err(SemanticError::InvalidThreshold(threshold)) }
}

impl SemanticIndex {
    pub fn new(config: IndexConfig) -> Result<Self, SemanticError> {
        config.validate()?;
        Ok(Self {
            config,
            namespaces: RwLock::new(HashMap::new()),
            ages: Mutex::new(BTreeMap::new()),
            next_key: AtomicU64::new(0),
        })
    }

    pub fn config(&self) -> &IndexConfig {
        &self.config
    }

    fn namespace(&self, name: &str) -> Option<(Arc<str>, Arc<Namespace>)> {
        read(&self.namespaces).get_key_value(name).map(|(k, v)| (Arc::clone(k), Arc::clone(v)))
    }

    fn namespace_or_create(&self, name: &str, dim: usize) -> Result<(Arc<str>, Arc<Namespace>), SemanticError> {
        if let Some(found) = self.namespace(name) {
            return Ok(found);
        }
        let mut map = write(&self.namespaces);
        if let Some((k, v)) = map.get_key_value(name) {
            return Ok((Arc::clone(k), Arc::clone(v)));
        }
        let key: Arc<str> = Arc::from(name);
        let ns = Arc::new(Namespace { state: RwLock::new(State::new(dim, &self.config)?) });
        map.insert(Arc::clone(&key), Arc::clone(&ns));
        Ok((key, ns))
    }

    /// Takes an emptied namespace out of the map, so its graph is freed and a later insert may
    /// start it with another dimension. Called with the namespace's write lock held.
    fn drop_if_empty(&self, name: &str, ns: &Arc<Namespace>, state: &mut State) {
        if state.len() > 0 || state.dropped {
            return;
        }
        state.dropped = true;
        let mut map = write(&self.namespaces);
        if map.get(name).is_some_and(|current| Arc::ptr_eq(current, ns)) {
            map.remove(name);
        }
    }

    /// Stores `vector` for the entry `id` of `namespace`, with the request `text` the guard will
    /// compare against. An entry with the same id is replaced. Returns the entries evicted to
    /// stay within the bounds (oldest first), which the caller should drop from its exact cache.
    ///
    /// The first insert into a namespace fixes its dimension; a vector of another size is a
    /// [`SemanticError::DimensionMismatch`] until the namespace empties.
    pub fn insert(
        &self,
        namespace: &str,
        id: EntryId,
        vector: &[f32],
        text: &str,
    ) -> Result<Vec<Evicted>, SemanticError> {
        let unit = unit_vector(vector)?;
        let mut evicted = Vec::new();
        loop {
            let (name, ns) = self.namespace_or_create(namespace, unit.len())?;
            let mut state = write(&ns.state);
            if state.dropped {
                continue;
            }
            if state.dim() != unit.len() {
                return Err(SemanticError::DimensionMismatch { expected: state.dim(), got: unit.len() });
            }
            if let Some(old) = state.key_of(&id) {
                state.remove_key(old);
                lock(&self.ages).remove(&old);
            }
            while state.len() >= self.config.max_entries_per_namespace {
                let Some(oldest) = state.oldest() else { break };
                if let Some(old_id) = state.remove_key(oldest) {
                    lock(&self.ages).remove(&oldest);
                    evicted.push(Evicted { namespace: Arc::clone(&name), id: old_id });
                }
            }
            let key = self.next_key.fetch_add(1, Ordering::Relaxed);
            let added = state.add(key, id, &unit, text);
            if added.is_ok() {
                lock(&self.ages).insert(key, Arc::clone(&name));
            } else {
                self.drop_if_empty(&name, &ns, &mut state);
            }
            drop(state);
            added?;
            break;
        }
        self.evict_oldest_anywhere(&mut evicted);
        Ok(evicted)
    }

    fn evict_oldest_anywhere(&self, evicted: &mut Vec<Evicted>) {
        loop {
            let (key, name) = {
                let mut ages = lock(&self.ages);
                if ages.len() <= self.config.max_entries {
                    return;
                }
                match ages.pop_first() {
                    Some(oldest) => oldest,
                    None => return,
                }
            };
            let Some((_, ns)) = self.namespace(&name) else { continue };
            let mut state = write(&ns.state);
            if let Some(id) = state.remove_key(key) {
                evicted.push(Evicted { namespace: Arc::clone(&name), id });
                self.drop_if_empty(&name, &ns, &mut state);
            }
        }
    }

    /// Up to `config.candidates` entries of `namespace` whose similarity to `query` is at least
    /// `threshold`, most similar first. An unknown namespace has none.
    pub fn nearest(&self, namespace: &str, query: &[f32], threshold: f32) -> Result<Vec<Candidate>, SemanticError> {
        check_threshold(threshold)?;
        let unit = unit_vector(query)?;
        let Some((_, ns)) = self.namespace(namespace) else { return Ok(Vec::new()) };
        let state = read(&ns.state);
        if state.dropped {
            return Ok(Vec::new());
        }
        if state.dim() != unit.len() {
            return Err(SemanticError::DimensionMismatch { expected: state.dim(), got: unit.len() });
        }
        state.nearest(&unit, self.config.candidates, threshold)
    }

    /// [`nearest`](Self::nearest), then [`guard::compatible`] between `text` and each candidate's
    /// text, most similar first: the first that passes is the hit.
    pub fn lookup(&self, namespace: &str, query: &[f32], text: &str, threshold: f32) -> Result<Lookup, SemanticError> {
        let mut rejected = None;
        for candidate in self.nearest(namespace, query, threshold)? {
            match guard::compatible(text, &candidate.text) {
                Ok(()) => return Ok(Lookup::Hit(candidate)),
                Err(mismatch) => {
                    rejected.get_or_insert(Lookup::Rejected { candidate, mismatch });
                }
            }
        }
        Ok(rejected.unwrap_or(Lookup::Miss))
    }

    /// Removes one entry (the exact cache evicted or expired it). Whether it was there.
    pub fn remove(&self, namespace: &str, id: &EntryId) -> bool {
        let Some((name, ns)) = self.namespace(namespace) else { return false };
        let mut state = write(&ns.state);
        let Some(key) = state.key_of(id) else { return false };
        state.remove_key(key);
        lock(&self.ages).remove(&key);
        self.drop_if_empty(&name, &ns, &mut state);
        true
    }

    /// Drops every namespace whose name `predicate` accepts (purge by tenant or model: the
    /// caller knows how it built the names).
    pub fn purge(&self, mut predicate: impl FnMut(&str) -> bool) -> Purged {
        let doomed: Vec<(Arc<str>, Arc<Namespace>)> = {
            let mut map = write(&self.namespaces);
            let names: Vec<Arc<str>> = map.keys().filter(|name| predicate(name)).cloned().collect();
            names.into_iter().filter_map(|name| map.remove(&name).map(|ns| (name, ns))).collect()
        };
        let mut purged = Purged::default();
        for (_, ns) in doomed {
            let mut state = write(&ns.state);
            state.dropped = true;
            let keys: Vec<u64> = state.keys().collect();
            let mut ages = lock(&self.ages);
            for key in &keys {
                ages.remove(key);
            }
            purged.namespaces += 1;
            purged.entries += keys.len();
        }
        purged
    }

    /// Entries in all namespaces.
    pub fn len(&self) -> usize {
        lock(&self.ages).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries in one namespace.
    pub fn namespace_len(&self, namespace: &str) -> usize {
        self.namespace(namespace).map_or(0, |(_, ns)| read(&ns.state).len())
    }

    /// Namespaces, entries and bytes, walking every namespace (for a metrics scrape, not per
    /// request).
    pub fn stats(&self) -> IndexStats {
        let all: Vec<Arc<Namespace>> = read(&self.namespaces).values().cloned().collect();
        let mut stats = IndexStats { namespaces: all.len(), ..IndexStats::default() };
        for ns in all {
            let state = read(&ns.state);
            stats.entries += state.len();
            stats.bytes += state.memory_bytes();
        }
        stats
    }
}

#[cfg(test)]
mod tests;
