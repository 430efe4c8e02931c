//! A pool's prefix index in the gateway: which endpoint is believed to hold which prompt blocks,
//! so that each routing candidate carries its prefix overlap with the request.
//!
//! What goes in today is what the host routed: a prompt's blocks are believed held by the
//! endpoint it was sent to for `prefix_index.guess_ttl` (`sluice_routing::PrefixIndex`'s
//! speculative entries). The index outlives pool rebuilds: an endpoint keeps its worker index
//! while its name and URL stay, and one that leaves the pool forgets what it held.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sluice_config::PrefixIndexConfig;
use sluice_metrics::PrefixIndexMetrics;
use sluice_routing::{BlockHash, PrefixIndex, WorkerIndex};

use super::endpoint::Endpoint;

/// One pool's index, shared by the pools that replace it while its settings stay.
pub struct Prefixes {
    state: Mutex<State>,
    /// The index takes time as a duration from a fixed origin.
    origin: Instant,
    config: PrefixIndexConfig,
    metrics: PrefixIndexMetrics,
}

struct State {
    index: PrefixIndex,
    /// Worker index of each endpoint, by name and URL.
    ids: HashMap<(Arc<str>, String), WorkerIndex>,
    /// Indexes of endpoints that left, reused first so the index's per-worker tables stay small.
    free: Vec<WorkerIndex>,
    next: WorkerIndex,
}

impl std::fmt::Debug for Prefixes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefixes").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Prefixes {
    pub fn new(config: &PrefixIndexConfig, metrics: PrefixIndexMetrics) -> Self {
        Prefixes {
            state: Mutex::new(State {
                index: PrefixIndex::new(config.max_blocks, config.guess_ttl),
                ids: HashMap::new(),
                free: Vec::new(),
                next: 0,
            }),
            origin: Instant::now(),
            config: config.clone(),
            metrics,
        }
    }

    /// `previous` when its settings are `config`'s (what it knows carries over), else a new one.
    pub fn carried(
        previous: Option<&Arc<Prefixes>>,
        config: &PrefixIndexConfig,
        metrics: impl FnOnce() -> PrefixIndexMetrics,
    ) -> Arc<Prefixes> {
        match previous {
            Some(p) if p.config == *config => Arc::clone(p),
            _ => Arc::new(Prefixes::new(config, metrics())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is consistent between calls: a panic elsewhere cannot leave it half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// The worker index of each of `endpoints`, in order. Endpoints no longer among them lose
    /// what they were believed to hold.
    pub fn assign(&self, endpoints: &[Arc<Endpoint>]) -> Vec<WorkerIndex> {
        let mut state = self.lock();
        let keys: Vec<(Arc<str>, String)> =
            endpoints.iter().map(|e| (Arc::clone(&e.name), e.base_url.to_string())).collect();
        let gone: Vec<(Arc<str>, String)> = state.ids.keys().filter(|k| !keys.contains(k)).cloned().collect();
        for key in gone {
            if let Some(id) = state.ids.remove(&key) {
                state.index.cleared(id);
                state.free.push(id);
            }
        }
        let ids = keys
            .into_iter()
            .map(|key| {
                if let Some(&id) = state.ids.get(&key) {
                    return id;
                }
                let id = match state.free.pop() {
                    Some(id) => id,
                    None => {
                        state.next += 1;
                        state.next - 1
                    }
                };
                state.ids.insert(key, id);
                id
            })
            .collect();
        self.metrics.blocks.set(i64::try_from(state.index.stats().blocks).unwrap_or(i64::MAX));
        ids
    }

    /// For each worker index in `ids`, how many leading blocks of `hashes` it is believed to hold.
    pub fn overlaps(&self, hashes: &[BlockHash], ids: &[WorkerIndex]) -> Vec<u32> {
        if hashes.is_empty() {
            return vec![0; ids.len()];
        }
        let width = ids.iter().map(|&id| id as usize + 1).max().unwrap_or(0);
        let mut by_worker = vec![0u32; width];
        self.lock().index.overlaps(hashes, self.now(), &mut by_worker);
        ids.iter().map(|&id| by_worker.get(id as usize).copied().unwrap_or(0)).collect()
    }

    /// The request with `hashes` went to worker `id`, which was believed to hold `held` of them.
    pub fn routed(&self, id: WorkerIndex, hashes: &[BlockHash], held: u32) {
        if hashes.is_empty() {
            return;
        }
        let blocks = {
            let mut state = self.lock();
            state.index.speculate(id, hashes, self.now());
            state.index.stats().blocks
        };
        let held = u64::from(held).min(hashes.len() as u64);
        self.metrics.held.inc_by(held);
        self.metrics.not_held.inc_by(hashes.len() as u64 - held);
        self.metrics.blocks.set(i64::try_from(blocks).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use sluice_config::EndpointConfig;
    use sluice_metrics::Metrics;
    use sluice_routing::BlockHash;

    use super::*;

    fn endpoint(name: &str, url: &str, metrics: &Metrics) -> Arc<Endpoint> {
        let config = EndpointConfig {
            name: name.to_owned(),
            url: url.parse().unwrap_or_else(|e| panic!("{e}")),
            http2: false,
            max_in_flight: None,
            engine: Default::default(),
        };
        let health = sluice_config::UpstreamConfig::default();
        Arc::new(
            Endpoint::new(
                Arc::from("p"),
                &config,
                None,
                &health.health.path,
                health.ejection,
                metrics.endpoint("p", name),
            )
            .unwrap_or_else(|e| panic!("{e}")),
        )
    }

    fn blocks(n: u64) -> Vec<BlockHash> {
        (1..=n).map(BlockHash).collect()
    }

    #[test]
    fn a_routed_prompt_is_held_where_it_went_and_forgotten_when_that_endpoint_leaves() {
        let metrics = Metrics::new().unwrap_or_else(|e| panic!("{e}"));
        let prefixes = Prefixes::new(&sluice_config::UpstreamConfig::default().prefix_index, metrics.prefix_index("p"));
        let (a, b) = (endpoint("a", "http://127.0.0.1:1", &metrics), endpoint("b", "http://127.0.0.1:2", &metrics));
        let ids = prefixes.assign(&[Arc::clone(&a), Arc::clone(&b)]);
        assert_eq!(ids, vec![0, 1]);
        prefixes.routed(ids[1], &blocks(4), 0);
        assert_eq!(prefixes.overlaps(&blocks(6), &ids), vec![0, 4]);
        assert_eq!(metrics.prefix_index("p").not_held.get(), 4);
        // The pool is rebuilt with b first: b keeps its index and what it holds.
        assert_eq!(prefixes.assign(&[Arc::clone(&b), Arc::clone(&a)]), vec![1, 0]);
        // b leaves; c takes its index without inheriting its blocks.
        let c = endpoint("c", "http://127.0.0.1:3", &metrics);
        let ids = prefixes.assign(&[Arc::clone(&a), c]);
        assert_eq!(ids, vec![0, 1]);
        assert_eq!(prefixes.overlaps(&blocks(6), &ids), vec![0, 0]);
        // Same name, another URL: another worker.
        let moved = endpoint("a", "http://127.0.0.1:9", &metrics);
        prefixes.routed(0, &blocks(2), 0);
        let ids = prefixes.assign(&[moved]);
        assert_eq!(prefixes.overlaps(&blocks(2), &ids), vec![0]);
    }
}
