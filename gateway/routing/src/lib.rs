//! How a pool picks a worker for a request: the inputs a policy sees, the [`RoutingPolicy`]
//! trait, and the baseline policies.
//!
//! The host (the gateway's pool, or the simulator's routing benchmark) builds one
//! [`RequestSummary`] per request and one [`Candidate`] per worker that serves the model, then
//! asks the policy. The same inputs will be handed to WebAssembly routing plugins, so everything
//! here is plain data: no I/O, no async, no clocks, no allocation on the routing path of the
//! baselines.
//!
//! - [`RequestSummary`]: model, prompt size, the prompt's chained block hashes (so the host can
//!   compute prefix overlap), output limit.
//! - [`Candidate`]: an id chosen by the host, [`CandidateStats`] (work the gateway itself sent,
//!   scraped [`EngineMetrics`], [`Health`]) and the [`PrefixOverlap`] the host computed from its
//!   prefix index.
//! - [`RoutingPolicy::choose`] returns a [`Decision`]: a candidate, or abstain (the host falls
//!   back to its default choice, or to the next policy in a chain).
//!
//! Policies, all by name in [`by_name`]:
//! - baselines without prefix knowledge: [`RandomPolicy`] (seeded), [`RoundRobinPolicy`],
//!   [`LeastLoadedPolicy`] (wait queue plus KV utilisation);
//! - Sluice's own, [`PredictedTtft`] (`sluice`): the least prefill ahead of the first token;
//! - the routers users compare with, reproduced: llm-d's [`LlmdScorer`] (approximate and
//!   precise) and [`LlmdSticky`], SGLang's [`SglangCacheAware`], Dynamo's [`DynamoCost`].
//!
//! [`PrefixIndex`] is the host's side of prefix awareness: which worker holds which blocks, from
//! KV events and routing guesses, bounded.

mod catalog;
mod choice;
mod dynamo;
mod hash;
mod index;
mod llmd;
mod policies;
mod predicted;
mod sglang;

pub use catalog::{DEFAULT_SPECULATIVE_TTL, POLICY_NAMES, PoolFacts, by_name};
pub use dynamo::DynamoCost;
pub use hash::{BlockHash, BlockHashMap, IdentityHasher, chain_block_hashes};
pub use index::{IndexStats, PrefixIndex, WorkerIndex};
pub use llmd::{LLMD_APPROX_BLOCKS_PER_WORKER, LlmdScorer, LlmdSticky};
pub use policies::{LeastLoadedPolicy, RandomPolicy, RoundRobinPolicy};
pub use predicted::PredictedTtft;
pub use sglang::{SGLANG_TREE_BLOCKS_PER_WORKER, SglangCacheAware};

/// Identifies a candidate within one routing call. The host chooses the values (an endpoint
/// index, say) and maps the decision back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CandidateId(pub u32);

/// What the policy knows about the request being routed.
#[derive(Debug, Clone, Copy)]
pub struct RequestSummary<'a> {
    /// The model name the client asked for.
    pub model: &'a str,
    /// Prompt length in tokens.
    pub prompt_tokens: u32,
    /// Tokens per block in `block_hashes`.
    pub block_size: u32,
    /// Chained hashes of the prompt's full blocks ([`chain_block_hashes`]); empty when the host
    /// does not tokenize.
    pub block_hashes: &'a [BlockHash],
    /// The client's output limit (`max_tokens`), if any.
    pub max_output_tokens: Option<u32>,
}

/// Engine metrics as last scraped from the worker (`/metrics`); may be a scrape interval old.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EngineMetrics {
    /// Sequences in the running batch (`vllm:num_requests_running`).
    pub running: u32,
    /// Requests waiting for admission (`vllm:num_requests_waiting`).
    pub waiting: u32,
    /// Fraction of KV blocks in use, 0..=1 (`vllm:kv_cache_usage_perc`).
    pub kv_usage: f64,
    /// Prefix cache hits / queries in tokens, 0..=1, over the worker's life or a recent window.
    pub prefix_cache_hit_rate: f64,
}

/// The host's view of a worker's health.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Health {
    #[default]
    Healthy,
    /// Reachable but failing some requests or probes; usable when nothing healthy is left.
    Degraded,
    /// Ejected or failing probes: policies must not pick it.
    Unhealthy,
}

/// Live load of one candidate.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CandidateStats {
    /// Requests the gateway itself has in flight to this worker (exact, no scrape lag).
    pub in_flight_requests: u32,
    /// Uncached prompt tokens of those requests not yet past their first token: the prefill
    /// work the gateway knows it queued there.
    pub in_flight_prefill_tokens: u64,
    /// Last scraped engine metrics; `None` before the first scrape or for engines without them.
    pub metrics: Option<EngineMetrics>,
    pub health: Health,
}

/// How much of the request's prompt the candidate is believed to hold in its prefix cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefixOverlap {
    /// Leading blocks of `RequestSummary::block_hashes` found for this candidate.
    pub blocks: u32,
    /// The same in tokens (`blocks × block_size`, at most the prompt length).
    pub tokens: u32,
}

/// One worker the request may go to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub id: CandidateId,
    pub stats: CandidateStats,
    pub overlap: PrefixOverlap,
}

impl Candidate {
    /// Whether a policy may pick this candidate at all.
    pub fn is_routable(&self) -> bool {
        self.stats.health != Health::Unhealthy
    }
}

/// A policy's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Route(CandidateId),
    /// No opinion (no routable candidate, or the policy does not apply); the host decides.
    Abstain,
}

/// Picks a worker for a request. Implementations are called concurrently from many requests,
/// so state lives behind atomics or locks; `choose` must be quick and must not block.
pub trait RoutingPolicy: Send + Sync + std::fmt::Debug {
    /// A short stable name (`random`, `round-robin`, …) for logs, metrics and reports.
    fn name(&self) -> &str;

    /// Chooses among `candidates` (never a candidate whose health is `Unhealthy`).
    fn choose(&self, request: &RequestSummary<'_>, candidates: &[Candidate]) -> Decision;
}
