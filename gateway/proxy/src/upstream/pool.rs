//! A pool: the endpoints that serve a set of models, and the choice among them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use sluice_config::{Config, EndpointConfig, PoolConfig, UpstreamConfig, WorkerApis};
use sluice_metrics::Metrics;
use sluice_plugin_host::types::{Candidate, CandidateStats, EngineMetrics, Health, PrefixOverlap};
use sluice_routing::{BlockHash, WorkerIndex};
use sluice_store_model::Pool as StoredPool;

use super::client::UpstreamClient;
use super::endpoint::Endpoint;
use super::fair_queue::{Capacity, CapacityFn, FairQueue};
use super::prefixes::Prefixes;

#[derive(Debug)]
pub struct Pool {
    pub name: Arc<str>,
    pub models: Vec<Arc<str>>,
    pub endpoints: Vec<Arc<Endpoint>>,
    /// The APIs the workers speak (`[[pools]] apis`, or the stored pool's `apis`); requests for
    /// others are refused (Messages go through chat when the pool speaks chat).
    pub apis: WorkerApis,
    pub config: UpstreamConfig,
    pub client: UpstreamClient,
    /// The admission queue, when some endpoint has an in-flight limit; shared by the pools
    /// that replace this one (same name), so the permits held carry over.
    pub queue: Option<Arc<FairQueue>>,
    /// Which endpoint is believed to hold which prompt blocks; carried over like the queue.
    pub prefixes: Arc<Prefixes>,
    /// Each endpoint's worker index in `prefixes`, in the order of `endpoints`.
    worker_ids: Vec<WorkerIndex>,
    /// Rotates the starting point of the least-in-flight scan so ties spread evenly.
    next: AtomicUsize,
}

impl Pool {
    pub fn new(config: &PoolConfig, metrics: &Metrics) -> Result<Self, http::Error> {
        let name: Arc<str> = Arc::from(config.name.as_str());
        let endpoints = config
            .endpoints
            .iter()
            .map(|e| {
                Endpoint::new(
                    Arc::clone(&name),
                    e,
                    e.max_in_flight.or(config.upstream.max_in_flight),
                    &config.upstream.health.path,
                    config.upstream.ejection.clone(),
                    metrics.endpoint(&config.name, &e.name),
                )
                .map(Arc::new)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let prefixes = Arc::new(Prefixes::new(&config.upstream.prefix_index, metrics.prefix_index(&config.name)));
        Ok(Pool {
            models: config.models.iter().map(|m| Arc::from(m.as_str())).collect(),
            queue: admission_queue(&name, &endpoints, &config.upstream, None, metrics),
            worker_ids: prefixes.assign(&endpoints),
            prefixes,
            endpoints,
            client: UpstreamClient::new(&config.upstream),
            apis: config.apis,
            config: config.upstream.clone(),
            next: AtomicUsize::new(0),
            name,
        })
    }

    /// The available endpoint with the fewest requests in flight, skipping `exclude` (indices
    /// already tried for this request), whatever the endpoints' in-flight limits.
    pub fn pick(&self, exclude: &[usize]) -> Option<(usize, &Arc<Endpoint>)> {
        self.pick_where(exclude, false)
    }

    /// As [`Pool::pick`], among the endpoints below their in-flight limit: the host's choice
    /// for a request, when route plugins make none.
    pub fn pick_with_room(&self, exclude: &[usize]) -> Option<(usize, &Arc<Endpoint>)> {
        self.pick_where(exclude, true)
    }

    fn pick_where(&self, exclude: &[usize], need_room: bool) -> Option<(usize, &Arc<Endpoint>)> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut best: Option<(usize, &Arc<Endpoint>, usize)> = None;
        for offset in 0..n {
            let i = (start + offset) % n;
            let e = &self.endpoints[i];
            if exclude.contains(&i) || !e.is_available() || (need_room && !e.has_room()) {
                continue;
            }
            let load = e.in_flight();
            if best.is_none_or(|(_, _, b)| load < b) {
                best = Some((i, e, load));
            }
        }
        best.map(|(i, e, _)| (i, e))
    }
}

impl Pool {
    /// The endpoints not in `exclude` and below their in-flight limit, as routing candidates
    /// (`id` is the endpoint's index), starting at a rotating offset so a router that takes the
    /// first of equals spreads ties. `overlaps` holds each endpoint's prefix overlap in blocks
    /// ([`Pool::overlaps`]), of `block_tokens` tokens each.
    pub fn candidates(&self, exclude: &[usize], overlaps: &[u32], block_tokens: u32) -> Vec<Candidate> {
        let n = self.endpoints.len();
        if n == 0 {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let now = Instant::now();
        (0..n)
            .map(|offset| (start + offset) % n)
            .filter(|i| !exclude.contains(i))
            .filter(|i| self.endpoints[*i].has_room())
            .filter_map(|i| {
                let e = &self.endpoints[i];
                Some(Candidate {
                    id: u32::try_from(i).ok()?,
                    stats: CandidateStats {
                        in_flight_requests: u32::try_from(e.in_flight()).unwrap_or(u32::MAX),
                        in_flight_prefill_tokens: e.in_flight_prefill(),
                        metrics: self.engine_metrics(e, now),
                        health: if e.is_available() { Health::Healthy } else { Health::Unhealthy },
                    },
                    overlap: {
                        let blocks = overlaps.get(i).copied().unwrap_or(0);
                        PrefixOverlap { blocks, tokens: blocks.saturating_mul(block_tokens) }
                    },
                })
            })
            .collect()
    }

    /// The endpoint's engine figures for a route plugin: none before the first read, for an
    /// engine that reports none of them, or once older than `engine_metrics.max_age`.
    fn engine_metrics(&self, e: &Endpoint, now: Instant) -> Option<EngineMetrics> {
        let sample = e.engine.last()?;
        let age = sample.age(now);
        let r = &sample.reading;
        if age > self.config.engine_metrics.max_age
            || (r.running.is_none() && r.waiting.is_none() && r.kv_cache_usage.is_none())
        {
            return None;
        }
        let count = |v: Option<f64>| v.map_or(0, |v| v.max(0.0).min(f64::from(u32::MAX)) as u32);
        Some(EngineMetrics {
            running: count(r.running),
            waiting: count(r.waiting),
            kv_usage: r.kv_cache_usage.unwrap_or(0.0),
            prefix_cache_hit_rate: sample.prefix_hit_rate.unwrap_or(0.0),
            age_ms: u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// Each endpoint's prefix overlap with a prompt of `hashes`, in blocks, in endpoint order.
    pub fn overlaps(&self, hashes: &[BlockHash]) -> Vec<u32> {
        self.prefixes.overlaps(hashes, &self.worker_ids)
    }

    /// A prompt of `hashes` went to endpoint `index`, believed to hold `held` of its blocks.
    pub fn routed(&self, index: usize, hashes: &[BlockHash], held: u32) {
        if let Some(&id) = self.worker_ids.get(index) {
            self.prefixes.routed(id, hashes, held);
        }
    }

    /// Endpoint `index` if it is available, below its in-flight limit and not in `exclude`.
    pub fn available(&self, index: usize, exclude: &[usize]) -> Option<(usize, &Arc<Endpoint>)> {
        if exclude.contains(&index) {
            return None;
        }
        self.endpoints.get(index).filter(|e| e.is_available() && e.has_room()).map(|e| (index, e))
    }

    /// Whether some available endpoint is at its in-flight limit.
    pub fn has_full_endpoint(&self) -> bool {
        self.endpoints.iter().any(|e| e.is_available() && !e.has_room())
    }
}

/// The slots of the usable endpoints: what the admission queue may hand out.
fn capacity(endpoints: &[Arc<Endpoint>]) -> Capacity {
    let mut slots = 0usize;
    for e in endpoints.iter().filter(|e| e.is_available()) {
        match e.max_in_flight() {
            None => return Capacity::Unlimited,
            Some(n) => slots = slots.saturating_add(n),
        }
    }
    Capacity::Slots(slots)
}

/// The pool's admission queue: `previous`'s, counting against the new endpoints, or a new one;
/// none when no endpoint has an in-flight limit (nothing to wait for, no lock per request).
fn admission_queue(
    name: &str,
    endpoints: &[Arc<Endpoint>],
    upstream: &UpstreamConfig,
    previous: Option<&Arc<FairQueue>>,
    metrics: &Metrics,
) -> Option<Arc<FairQueue>> {
    if endpoints.iter().all(|e| e.max_in_flight().is_none()) {
        return None;
    }
    let list = endpoints.to_vec();
    let capacity: CapacityFn = Arc::new(move || capacity(&list));
    match previous {
        Some(queue) => {
            queue.reconfigure(capacity, upstream.max_queued);
            Some(Arc::clone(queue))
        }
        None => Some(FairQueue::new(capacity, upstream.max_queued, metrics.pool_queue(name))),
    }
}

impl Pool {
    /// A pool from the store's description, reusing `previous` endpoints (their load, health,
    /// ejection state) and connections where pool, name, URL and protocol are unchanged.
    /// Drained endpoints stay listed (for the live view) but are never picked.
    fn from_store(
        stored: &StoredPool,
        apis: WorkerApis,
        upstream: &UpstreamConfig,
        configured: &[EndpointConfig],
        previous: Option<&Pool>,
        metrics: &Metrics,
    ) -> Result<Self, String> {
        let name: Arc<str> = Arc::from(stored.name.as_str());
        let mut endpoints = Vec::new();
        for e in &stored.endpoints {
            let url: http::Uri = e
                .url
                .parse()
                .map_err(|err| format!("pool {:?} endpoint {:?}: bad URL {:?}: {err}", stored.name, e.name, e.url))?;
            let reused = previous.and_then(|p| {
                p.endpoints.iter().find(|old| {
                    *old.name == *e.name
                        && old.base_url == url
                        && old.http2 == e.http2
                        && old.engine.flavor() == e.flavor
                })
            });
            if let Some(old) = reused {
                old.set_drained(e.drained);
                endpoints.push(Arc::clone(old));
                continue;
            }
            let config =
                EndpointConfig { name: e.name.clone(), url, http2: e.http2, max_in_flight: None, engine: e.flavor };
            // Stored endpoints have no limit of their own: the config file's endpoint of the
            // same name in the same pool lends its own, else the pool's applies.
            let limit = configured.iter().find(|c| c.name == e.name).and_then(|c| c.max_in_flight);
            let endpoint = Endpoint::new(
                Arc::clone(&name),
                &config,
                limit.or(upstream.max_in_flight),
                &upstream.health.path,
                upstream.ejection.clone(),
                metrics.endpoint(&stored.name, &e.name),
            )
            .map_err(|err| format!("pool {:?} endpoint {:?}: {err}", stored.name, e.name))?;
            endpoint.set_drained(e.drained);
            endpoints.push(Arc::new(endpoint));
        }
        let client = match previous {
            Some(p) if p.config == *upstream => p.client.clone(),
            _ => UpstreamClient::new(upstream),
        };
        let queue = admission_queue(&name, &endpoints, upstream, previous.and_then(|p| p.queue.as_ref()), metrics);
        let prefixes = Prefixes::carried(previous.map(|p| &p.prefixes), &upstream.prefix_index, || {
            metrics.prefix_index(&stored.name)
        });
        Ok(Pool {
            models: stored.models.iter().map(|m| Arc::from(m.as_str())).collect(),
            worker_ids: prefixes.assign(&endpoints),
            prefixes,
            endpoints,
            queue,
            client,
            apis,
            config: upstream.clone(),
            next: AtomicUsize::new(0),
            name,
        })
    }
}

/// Every pool, and which pool serves each model.
#[derive(Debug, Default)]
pub struct Upstreams {
    pub pools: Vec<Arc<Pool>>,
    by_model: HashMap<Arc<str>, Arc<Pool>>,
}

impl Upstreams {
    pub fn from_config(config: &Config, metrics: &Metrics) -> Result<Self, http::Error> {
        let mut upstreams = Upstreams::default();
        for p in &config.pools {
            let pool = Arc::new(Pool::new(p, metrics)?);
            for m in &pool.models {
                upstreams.by_model.insert(Arc::clone(m), Arc::clone(&pool));
            }
            upstreams.pools.push(pool);
        }
        Ok(upstreams)
    }

    /// The pools the store describes, with the upstream settings of the config's pool of the
    /// same name (else the config's defaults). A pool that cannot be built is left out and
    /// reported; the rest still serve.
    pub fn from_store(
        pools: &[StoredPool],
        config: &Config,
        previous: &Upstreams,
        metrics: &Metrics,
    ) -> (Self, Vec<String>) {
        let mut upstreams = Upstreams::default();
        let mut problems = Vec::new();
        for stored in pools {
            let configured = config.pools.iter().find(|p| p.name == stored.name);
            let upstream = configured.map_or(&config.upstream, |p| &p.upstream);
            let endpoints = configured.map_or(&[][..], |p| &p.endpoints);
            // The store's list: the file's for a pool the file declares (the reconciliation
            // wrote it), the admin API's otherwise.
            let apis = WorkerApis::of(&stored.apis);
            let old = previous.pools.iter().find(|p| *p.name == *stored.name).map(|p| &**p);
            match Pool::from_store(stored, apis, upstream, endpoints, old, metrics) {
                Ok(pool) => {
                    let pool = Arc::new(pool);
                    for m in &pool.models {
                        if upstreams.by_model.contains_key(m) {
                            problems.push(format!(
                                "model {m:?} is served by more than one pool; {:?} ignored",
                                stored.name
                            ));
                            continue;
                        }
                        upstreams.by_model.insert(Arc::clone(m), Arc::clone(&pool));
                    }
                    upstreams.pools.push(pool);
                }
                Err(problem) => problems.push(problem),
            }
        }
        (upstreams, problems)
    }

    pub fn pool_for(&self, model: &str) -> Option<&Arc<Pool>> {
        self.by_model.get(model)
    }

    /// Every served model, sorted.
    pub fn models(&self) -> Vec<Arc<str>> {
        let mut models: Vec<Arc<str>> = self.by_model.keys().cloned().collect();
        models.sort();
        models
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> Pool {
        pool_with(n, "")
    }

    /// `upstream`: more `[pools.upstream]` lines.
    fn pool_with(n: usize, upstream: &str) -> Pool {
        let text = format!(
            "[[pools]]\nname = \"p\"\nmodels = [\"m\"]\nendpoints = [{}]\n[pools.upstream]\n{upstream}\n[pools.upstream.ejection]\nconsecutive_failures = 1",
            (0..n).map(|i| format!("\"http://127.0.0.1:{}\"", 1000 + i)).collect::<Vec<_>>().join(",")
        );
        let config = Config::from_toml(&text, &[], &|_| None).unwrap();
        Pool::new(&config.pools[0], &Metrics::new().unwrap()).unwrap()
    }

    #[test]
    fn in_flight_limits_bring_a_queue_and_full_endpoints_are_passed_over() {
        assert!(pool(2).queue.is_none(), "no limit, no queue");
        let p = pool_with(2, "max_in_flight = 1");
        assert!(p.queue.is_some());
        assert_eq!(capacity(&p.endpoints), Capacity::Slots(2));
        let _busy = p.endpoints[0].try_begin().unwrap();
        for _ in 0..4 {
            assert_eq!(p.pick_with_room(&[]).unwrap().0, 1);
        }
        assert_eq!(p.candidates(&[], &[], 16).iter().map(|c| c.id).collect::<Vec<_>>(), vec![1]);
        assert!(p.available(0, &[]).is_none(), "a router's choice of a full endpoint is not taken");
        assert!(p.pick(&[]).is_some(), "side traffic (plugin embeddings) ignores the limit");
        let _also = p.endpoints[1].try_begin().unwrap();
        assert!(p.pick_with_room(&[]).is_none());
        assert!(p.has_full_endpoint());
        // An endpoint out of service takes its slots with it.
        p.endpoints[1].record_failure(crate::upstream::FailureKind::Connect);
        assert_eq!(capacity(&p.endpoints), Capacity::Slots(1));
    }

    #[tokio::test]
    async fn a_pool_rebuilt_from_the_store_keeps_its_queue_and_the_permits_held() {
        let text = "[[pools]]\nname = \"p\"\nmodels = [\"m\"]\n\
                    endpoints = [{ url = \"http://127.0.0.1:1000\", name = \"a\", max_in_flight = 1 }]\n\
                    [pools.upstream]\nmax_in_flight = 2";
        let config = Config::from_toml(text, &[], &|_| None).unwrap();
        let metrics = Metrics::new().unwrap();
        let before = Upstreams::from_config(&config, &metrics).unwrap();
        let queue = Arc::clone(before.pools[0].queue.as_ref().unwrap());
        let priority = sluice_store_model::Priority::Normal;
        let _held = queue.admit("t", priority, std::time::Duration::from_secs(1)).await.unwrap();

        let endpoint = |name: &str, port: u16| sluice_store_model::Endpoint {
            id: 1,
            pool: "p".into(),
            name: name.into(),
            url: format!("http://127.0.0.1:{port}"),
            flavor: Default::default(),
            weight: 1,
            http2: false,
            drained: false,
            created_at: Default::default(),
        };
        let stored = StoredPool {
            id: 1,
            name: "p".into(),
            models: vec!["m".into()],
            apis: vec![sluice_store_model::PoolApi::Chat, sluice_store_model::PoolApi::Messages],
            endpoints: vec![endpoint("a", 1000), endpoint("b", 1001)],
            created_at: Default::default(),
        };
        let (after, problems) = Upstreams::from_store(&[stored], &config, &before, &metrics);
        assert!(problems.is_empty(), "{problems:?}");
        let pool = &after.pools[0];
        assert!(Arc::ptr_eq(pool.queue.as_ref().unwrap(), &queue), "the same queue serves the new pool");
        assert_eq!(queue.admitted(), 1, "the permit held before the rebuild still counts");
        assert_eq!(pool.endpoints[0].max_in_flight(), Some(1), "the config's endpoint table lends its limit");
        assert_eq!(pool.endpoints[1].max_in_flight(), Some(2), "a stored-only endpoint takes the pool's");
        assert_eq!(capacity(&pool.endpoints), Capacity::Slots(3));
        assert!(pool.apis.speaks("messages") && !pool.apis.speaks("embeddings"), "the stored APIs, not the file's");
    }

    #[test]
    fn picks_least_in_flight() {
        let p = pool(3);
        let _a = p.endpoints[0].begin();
        let _b = p.endpoints[0].begin();
        let _c = p.endpoints[2].begin();
        for _ in 0..5 {
            assert_eq!(p.pick(&[]).unwrap().0, 1);
        }
    }

    #[test]
    fn candidates_rotate_skip_tried_and_mark_ejected_unhealthy() {
        let p = pool(3);
        let _a = p.endpoints[1].begin();
        p.endpoints[2].record_failure(crate::upstream::FailureKind::Connect);
        let c = p.candidates(&[0], &[], 16);
        assert_eq!(c.len(), 2);
        let one = c.iter().find(|c| c.id == 1).unwrap();
        assert_eq!(one.stats.in_flight_requests, 1);
        assert_eq!(one.stats.health, Health::Healthy);
        assert_eq!(c.iter().find(|c| c.id == 2).unwrap().stats.health, Health::Unhealthy);
        let firsts: std::collections::HashSet<u32> = (0..3).map(|_| p.candidates(&[], &[], 16)[0].id).collect();
        assert_eq!(firsts.len(), 3, "the order rotates");
        assert!(p.available(2, &[]).is_none());
        assert!(p.available(1, &[1]).is_none());
        assert_eq!(p.available(1, &[]).unwrap().0, 1);
    }

    #[test]
    fn candidates_carry_fresh_engine_figures_and_withhold_stale_ones() {
        use crate::upstream::engine_metrics::EngineReading;
        let p = pool(3);
        let now = std::time::Instant::now();
        let reading = EngineReading {
            running: Some(4.0),
            waiting: Some(2.0),
            kv_cache_usage: Some(0.5),
            ..EngineReading::default()
        };
        p.endpoints[0].engine.record(reading, now);
        let stale = now.checked_sub(p.config.engine_metrics.max_age * 2).unwrap();
        p.endpoints[1].engine.record(reading, stale);
        // An engine exporting none of the figures routing uses says nothing.
        p.endpoints[2].engine.record(EngineReading { prefix_hit_rate: Some(0.5), ..EngineReading::default() }, now);
        let c = p.candidates(&[], &[], 16);
        let metrics = |id: u32| c.iter().find(|c| c.id == id).unwrap().stats.metrics;
        let fresh = metrics(0).expect("a fresh reading is passed on");
        assert_eq!((fresh.running, fresh.waiting, fresh.kv_usage), (4, 2, 0.5));
        assert!(fresh.age_ms < 1000);
        assert!(metrics(1).is_none(), "older than max_age");
        assert!(metrics(2).is_none(), "no figure routing uses");
    }

    #[test]
    fn ties_rotate() {
        let p = pool(3);
        let picks: std::collections::HashSet<usize> = (0..3).map(|_| p.pick(&[]).unwrap().0).collect();
        assert_eq!(picks.len(), 3);
    }

    #[test]
    fn excluded_and_ejected_are_skipped() {
        let p = pool(2);
        assert_eq!(p.pick(&[0]).unwrap().0, 1);
        p.endpoints[1].record_failure(crate::upstream::FailureKind::Connect);
        assert_eq!(p.pick(&[]).unwrap().0, 0);
        assert!(p.pick(&[0]).is_none());
    }
}
