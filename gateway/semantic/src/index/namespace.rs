//! One namespace: an HNSW graph (USearch) over its vectors, and the entries the graph's keys
//! stand for. Callers hold the namespace's lock; nothing here locks.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use super::{Candidate, EntryId, IndexConfig};
use crate::SemanticError;

/// What the graph's key stands for.
struct Stored {
    id: EntryId,
    text: Arc<str>,
}

pub(super) struct State {
    ann: Index,
    dim: usize,
    /// The graph key of each entry.
    keys: HashMap<EntryId, u64>,
    /// Entries by graph key. Keys grow with every insert, so the first is the oldest.
    entries: BTreeMap<u64, Stored>,
    /// Set when the namespace emptied and left the index's map: a writer that still holds it
    /// must look the namespace up again.
    pub(super) dropped: bool,
    search_threads: usize,
    max_entries: usize,
}

fn index_error(e: impl std::fmt::Display) -> SemanticError {
    SemanticError::Index(e.to_string())
}

/// Room for this many entries when a namespace is created; it doubles as it fills.
const INITIAL_CAPACITY: usize = 64;

impl State {
    pub(super) fn new(dim: usize, config: &IndexConfig) -> Result<Self, SemanticError> {
        let options = IndexOptions {
            dimensions: dim,
            // Vectors are scaled to unit length on the way in, so the inner product is the
            // cosine and USearch need not normalise every comparison.
            metric: MetricKind::IP,
            quantization: ScalarKind::F32,
            connectivity: config.connectivity,
            expansion_add: config.expansion_add,
            expansion_search: config.expansion_search,
            multi: false,
        };
        let ann = Index::new(&options).map_err(index_error)?;
        // USearch hands each concurrent search one of a fixed number of contexts (and fails
        // when none is free), so the number is ours to choose, not the core count it defaults to.
        ann.reserve_capacity_and_threads(INITIAL_CAPACITY.min(config.max_entries_per_namespace), config.search_threads)
            .map_err(index_error)?;
        Ok(Self {
            ann,
            dim,
            keys: HashMap::new(),
            entries: BTreeMap::new(),
            dropped: false,
            search_threads: config.search_threads,
            max_entries: config.max_entries_per_namespace,
        })
    }

    pub(super) fn dim(&self) -> usize {
        self.dim
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn key_of(&self, id: &EntryId) -> Option<u64> {
        self.keys.get(id).copied()
    }

    /// Adds `unit` (unit length, `dim` long) under `key`. The caller has made room.
    pub(super) fn add(&mut self, key: u64, id: EntryId, unit: &[f32], text: &str) -> Result<(), SemanticError> {
        if self.ann.size() >= self.ann.capacity() {
            // Removed entries' slots are reused first, so the graph only grows when it is full.
            let needed = self.ann.size() + 1;
            let capacity = (self.ann.capacity() * 2).max(INITIAL_CAPACITY).min(self.max_entries).max(needed);
            self.ann.reserve_capacity_and_threads(capacity, self.search_threads).map_err(index_error)?;
        }
        self.ann.add(key, unit).map_err(index_error)?;
        self.keys.insert(id, key);
        self.entries.insert(key, Stored { id, text: Arc::from(text) });
        Ok(())
    }

    /// Removes the entry under `key`, returning its id.
    pub(super) fn remove_key(&mut self, key: u64) -> Option<EntryId> {
        let stored = self.entries.remove(&key)?;
        self.keys.remove(&stored.id);
        // A failed removal leaves an orphan vector in the graph; searches skip keys without an
        // entry, and the slot is freed when the namespace goes.
        let _ = self.ann.remove(key);
        Some(stored.id)
    }

    /// The oldest entry's key.
    pub(super) fn oldest(&self) -> Option<u64> {
        self.entries.keys().next().copied()
    }

    /// Every entry's graph key, for purging.
    pub(super) fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.entries.keys().copied()
    }

    /// Up to `count` entries nearest to `unit`, best first, with similarity at least `threshold`.
    pub(super) fn nearest(&self, unit: &[f32], count: usize, threshold: f32) -> Result<Vec<Candidate>, SemanticError> {
        if self.entries.is_empty() {
            return Ok(Vec::new());
        }
        let matches = self.ann.search(unit, count).map_err(index_error)?;
        let mut out = Vec::with_capacity(matches.keys.len());
        for (key, distance) in matches.keys.iter().zip(&matches.distances) {
            // USearch's inner-product distance is 1 - a·b.
            let similarity = (1.0 - distance).clamp(-1.0, 1.0);
            if similarity < threshold {
                continue;
            }
            if let Some(stored) = self.entries.get(key) {
                out.push(Candidate { id: stored.id, similarity, text: Arc::clone(&stored.text) });
            }
        }
        out.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
        Ok(out)
    }

    /// Bytes held: the graph and vectors as USearch counts them, plus the entries' bookkeeping
    /// and texts as estimated from their sizes.
    pub(super) fn memory_bytes(&self) -> usize {
        let texts: usize = self.entries.values().map(|s| s.text.len()).sum();
        self.ann.memory_usage() + self.entries.len() * BOOKKEEPING_PER_ENTRY + texts
    }
}

/// Per entry, outside the graph: the id → key map, the key → entry map, the text's allocation
/// header and the index-wide age order (see `SemanticIndex`). Hash maps run at most 7/8 full and
/// B-tree nodes about 2/3 full, hence the slack over the raw sizes.
pub(super) const BOOKKEEPING_PER_ENTRY: usize = {
    let id_to_key = (std::mem::size_of::<EntryId>() + 8 + 1) * 8 / 7;
    let key_to_entry = (8 + std::mem::size_of::<EntryId>() + 16) * 3 / 2;
    let text_header = 16;
    let age_order = (8 + 16) * 3 / 2;
    id_to_key + key_to_entry + text_header + age_order
};
