//! Limits shared by every replica, in Redis, in one of two modes:
//!
//! - **leased** (the default): each replica decides from slices of quota it took from Redis
//!   ([`super::lease`]); a decision needs Redis only when a lease runs short, and then one
//!   script takes a slice of every limit that is short, all or none. Settling happens against
//!   the lease; what goes back to Redis (idle leases, settlements a lease cannot absorb) is
//!   sent in batches by a task every few tens of milliseconds. The replicas never admit more
//!   than the limit; they may admit less, by at most `replicas × slice`, while leases are held.
//! - **exact**: one atomic script per decision and one per ending, so what passes is exactly
//!   what one process with every replica's traffic would pass, at a round trip per request.
//!
//! When Redis cannot answer within the timeout, decisions that a lease cannot serve fall back
//! to this process's state with every limit divided by the configured replica count (or are
//! refused, when set to fail closed); Redis is tried again a second later. Holds taken during
//! the fallback end there.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use crate::metrics::LimitsMetrics;

use super::lease::{Change, Granted, LeaseSettings, Leases, Step};
use super::{Ask, Decision, Ending, Grant, Kind, LimitState, LimitsError, Local, Taken, now_us, scripts};

/// How long Redis is left alone after a failure before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What decisions do while Redis is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Decide locally, each limit divided by `replicas`: the global limit holds as long as the
    /// replicas really are that many and share traffic evenly.
    Local { replicas: u64 },
    /// Refuse (the capability returns `unavailable`).
    Closed,
}

/// How decisions use Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedMode {
    /// From slices of quota leased by this replica.
    Leased(LeaseSettings),
    /// A round trip per decision.
    Exact,
}

impl Default for SharedMode {
    fn default() -> Self {
        SharedMode::Leased(LeaseSettings::default())
    }
}

#[derive(Debug, Clone)]
pub struct SharedSettings {
    /// `redis://` or `rediss://` URL; it may carry a password, so it is never logged.
    pub url: String,
    /// The longest a decision waits for Redis before the fallback.
    pub timeout: Duration,
    pub fallback: Fallback,
    /// Prefix of every key Sluice writes.
    pub key_prefix: String,
    pub mode: SharedMode,
}

/// Limits in Redis, with a local fallback.
pub struct Shared {
    core: Arc<Core>,
    /// The task returning idle leases and renewing leased slots (leased mode; started by the
    /// first decision made inside a runtime, stopped when this is dropped).
    maintenance: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

struct Core {
    settings: SharedSettings,
    client: Option<redis::Client>,
    connection: OnceCell<ConnectionManager>,
    acquire: redis::Script,
    change: redis::Script,
    /// Decisions while Redis is away.
    fallback: Local,
    leases: Leases,
    degraded: AtomicBool,
    /// Milliseconds since `clock` before which Redis is not tried again.
    retry_at_ms: AtomicU64,
    clock: Instant,
    /// This process's id among the holders of slots.
    replica: String,
    next_hold: AtomicU64,
    metrics: Option<LimitsMetrics>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the URL: it may hold a password.
        f.debug_struct("Shared")
            .field("mode", &self.core.settings.mode)
            .field("fallback", &self.core.settings.fallback)
            .field("degraded", &self.degraded())
            .finish()
    }
}

/// Redis's answer to [`scripts::ACQUIRE`].
struct Reply {
    granted: bool,
    /// Index among the remote steps.
    refused_by: Option<usize>,
    retry_after_ms: Option<u64>,
    /// Per remote step.
    limits: Vec<Granted>,
}

impl Shared {
    /// A backend for `settings`; nothing connects until the first decision. A URL Redis cannot
    /// parse makes every decision take the fallback (and is logged once).
    pub fn new(settings: SharedSettings, metrics: Option<LimitsMetrics>) -> Self {
        static INSTANCES: AtomicU64 = AtomicU64::new(0);
        let client = match redis::Client::open(settings.url.as_str()) {
            Ok(c) => Some(c),
            Err(_) => {
                tracing::error!("the [redis] url is not a valid Redis URL; rate limits use the fallback");
                None
            }
        };
        // Unique among replicas (time and process) and among backends of one process.
        let instance = INSTANCES.fetch_add(1, Ordering::Relaxed);
        let replica = format!("{:x}", now_us() ^ (u64::from(std::process::id()) << 40) ^ (instance << 56));
        let core = Core {
            settings,
            client,
            connection: OnceCell::new(),
            acquire: redis::Script::new(scripts::ACQUIRE),
            change: redis::Script::new(scripts::CHANGE),
            fallback: Local::default(),
            leases: Leases::default(),
            degraded: AtomicBool::new(false),
            retry_at_ms: AtomicU64::new(0),
            clock: Instant::now(),
            replica,
            next_hold: AtomicU64::new(0),
            metrics,
        };
        Shared { core: Arc::new(core), maintenance: Mutex::new(None) }
    }

    /// Whether decisions are being made without Redis now.
    pub fn degraded(&self) -> bool {
        self.core.degraded.load(Ordering::Relaxed)
    }

    pub fn fallback_policy(&self) -> Fallback {
        self.core.settings.fallback
    }

    pub fn mode(&self) -> SharedMode {
        self.core.settings.mode
    }

    /// Takes every ask's amount, all or none: from this replica's leases where they suffice,
    /// else from Redis, else from the fallback.
    pub async fn acquire(&self, asks: &[Ask], timeout: Duration) -> Result<Grant, LimitsError> {
        if let SharedMode::Leased(lease) = self.core.settings.mode {
            self.start_maintenance(lease);
        }
        self.core.acquire(asks, timeout).await
    }

    /// Ends a hold taken from Redis or from a lease. A failure is logged and counted: what was
    /// taken stays taken until its window or lease runs out, erring on the side of the limit.
    pub async fn end(&self, taken: &[Taken], ending: Ending) {
        self.core.end(taken, ending).await;
    }

    /// Ends a hold at once when it needs no network (every part of it leased, or nothing to
    /// change); `false`, doing nothing, otherwise (end it with [`Shared::end`]).
    pub fn end_now(&self, taken: &[Taken], ending: Ending) -> bool {
        if !taken.iter().all(|t| t.leased || t.delta(ending) == 0) {
            return false;
        }
        self.core.end_leased(taken, ending);
        true
    }

    /// Ends a hold taken from the fallback.
    pub fn end_fallback(&self, taken: &[Taken], ending: Ending, now_us: u64) {
        self.core.fallback.end(taken, ending, now_us);
    }

    /// Connects to Redis and loads the scripts now, waiting at most `within`, so that the first
    /// decisions neither pay for a connection nor, when making one takes longer than a
    /// decision's timeout (a busy machine), fall back and admit on local state. `false` when
    /// Redis did not answer: that is logged and counted as a decision's failure would be, and
    /// decisions use the fallback until Redis answers.
    pub async fn connect(&self, within: Duration) -> bool {
        match tokio::time::timeout(within, self.core.load_scripts()).await {
            Ok(Ok(())) => {
                self.core.recovered();
                true
            }
            Ok(Err(e)) => {
                self.core.failed(&e);
                false
            }
            Err(_) => {
                self.core.failed("timed out");
                false
            }
        }
    }

    /// Units this replica's lease of `storage_key` holds unused (for tests and inspection).
    pub fn leased_free(&self, storage_key: &str) -> u64 {
        self.core.leases.free(storage_key)
    }

    /// The Redis key of a limit (for tests and inspection).
    pub fn redis_key(&self, ask: &Ask, now_ms: u64) -> String {
        self.core.redis_key(ask, now_ms)
    }

    /// Sends back now what the leases hold unused and the settlements waiting (what the
    /// maintenance task does for idle leases); at shutdown, and for tests.
    pub async fn return_leases(&self) {
        let changes = self.core.leases.drain();
        self.core.send(changes).await;
    }

    fn start_maintenance(&self, lease: LeaseSettings) {
        let Ok(mut task) = self.maintenance.lock() else { return };
        if task.is_some() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            *task = Some(runtime.spawn(maintain(Arc::downgrade(&self.core), lease)));
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let task = match self.maintenance.get_mut() {
            Ok(task) => task.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(task) = task {
            task.abort();
        }
        // What the leases hold unused goes back, if a runtime can still send it; otherwise it
        // stays taken until its window or TAT passes, and leased slots lapse.
        let changes = self.core.leases.drain();
        if changes.is_empty() || self.core.connection.get().is_none() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let core = Arc::clone(&self.core);
            runtime.spawn(async move { core.send(changes).await });
        }
    }
}

/// Every few tens of milliseconds: idle leases go back, settlements waiting are sent, and
/// leased slots are renewed every third of their time to live. Stops when the backend is gone.
async fn maintain(core: Weak<Core>, lease: LeaseSettings) {
    let tick = (lease.idle / 5).clamp(Duration::from_millis(10), Duration::from_millis(100));
    let renew_every = lease.slot_ttl / 3;
    let idle_ms = u64::try_from(lease.idle.as_millis()).unwrap_or(u64::MAX);
    let ttl_ms = u64::try_from(lease.slot_ttl.as_millis()).unwrap_or(u64::MAX);
    let mut renewed = Instant::now();
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(core) = core.upgrade() else { return };
        let renew = (renewed.elapsed() >= renew_every).then(|| {
            renewed = Instant::now();
            ttl_ms
        });
        let changes = core.leases.due(core.elapsed_ms(), idle_ms, renew);
        core.send(changes).await;
    }
}

impl Core {
    fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether Redis is being left alone after a failure.
    fn resting(&self) -> bool {
        self.degraded() && self.elapsed_ms() < self.retry_at_ms.load(Ordering::Relaxed)
    }

    async fn connection(&self) -> Result<ConnectionManager, String> {
        let client = self.client.as_ref().ok_or("invalid Redis URL")?;
        let timeout = self.settings.timeout;
        self.connection
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    // Longer than a decision waits: a decision gives up on its own timeout,
                    // and the warm-up at start ([`Shared::connect`]) may wait this long.
                    .set_connection_timeout(Some(timeout.max(super::MAX_LIMITS_WAIT)))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1);
                client.get_connection_manager_with_config(config).await
            })
            .await
            .cloned()
            .map_err(|e| e.to_string())
    }

    async fn load_scripts(&self) -> Result<(), String> {
        let mut connection = self.connection().await?;
        for script in [&self.acquire, &self.change] {
            script.prepare_invoke().load_async(&mut connection).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Redis failed: decide without it for a while, saying so once.
    fn failed(&self, error: &str) {
        if let Some(m) = &self.metrics {
            m.errors.inc();
            m.degraded.set(1);
        }
        self.retry_at_ms.store(self.elapsed_ms() + RETRY_AFTER.as_millis() as u64, Ordering::Relaxed);
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(error, fallback = ?self.settings.fallback, "Redis is unreachable; rate limits use the fallback");
        }
    }

    fn recovered(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            if let Some(m) = &self.metrics {
                m.degraded.set(0);
            }
            tracing::info!("Redis is reachable again; rate limits are shared again");
        }
    }

    async fn acquire(&self, asks: &[Ask], timeout: Duration) -> Result<Grant, LimitsError> {
        let wall_ms = now_us() / 1000;
        let now_ms = self.elapsed_ms();
        let keys: Vec<String> = asks.iter().map(|a| self.redis_key(a, wall_ms)).collect();
        let steps = match self.settings.mode {
            SharedMode::Leased(_) => self.leases.plan(asks, &keys, now_ms, wall_ms),
            SharedMode::Exact => asks.iter().map(super::lease::exact).collect(),
        };
        if steps.iter().all(|s| matches!(s, Step::Local { .. })) {
            // A lease served every limit: no round trip (and none while Redis is away, until
            // the leases run out).
            let states =
                steps.iter().map(|s| if let Step::Local { state } = s { *state } else { LimitState::default() });
            let decision = Decision { granted: true, refused_by: None, retry_after_ms: None, states: states.collect() };
            return Ok(Grant { decision, taken: taken(asks, keys, &steps, 0), shared: true });
        }
        if self.resting() {
            self.leases.undo(asks, &keys, &steps);
            return self.fall_back(asks);
        }
        let started = Instant::now();
        let hold = self.next_hold.fetch_add(1, Ordering::Relaxed) + 1;
        let remote = self.acquire_remote(asks, &keys, &steps, hold, wall_ms);
        let error = match tokio::time::timeout(timeout.min(self.settings.timeout), remote).await {
            Ok(Ok(reply)) => {
                if let Some(m) = &self.metrics {
                    m.backend_seconds.observe(started.elapsed().as_secs_f64());
                }
                self.recovered();
                return Ok(self.decide(asks, keys, &steps, reply, hold, wall_ms));
            }
            Ok(Err(e)) => e,
            Err(_) => "timed out".to_owned(),
        };
        self.leases.undo(asks, &keys, &steps);
        self.failed(&error);
        self.fall_back(asks)
    }

    /// The grant or refusal Redis's reply makes, the leases updated with what it gave.
    fn decide(&self, asks: &[Ask], keys: Vec<String>, steps: &[Step], reply: Reply, hold: u64, wall_ms: u64) -> Grant {
        let mut remote = reply.limits.into_iter();
        let granted: Vec<Option<Granted>> =
            steps.iter().map(|s| if matches!(s, Step::Remote { .. }) { remote.next() } else { None }).collect();
        if reply.granted {
            let states = self.leases.granted(asks, &keys, steps, &granted, self.elapsed_ms(), wall_ms);
            let decision = Decision { granted: true, refused_by: None, retry_after_ms: None, states };
            return Grant { decision, taken: taken(asks, keys, steps, hold), shared: true };
        }
        self.leases.undo(asks, &keys, steps);
        let states = asks
            .iter()
            .zip(steps.iter().zip(&granted))
            .map(|(ask, (step, g))| match (step, g) {
                (Step::Local { state }, _) => *state,
                (_, Some(g)) => LimitState { limit: ask.limit, remaining: g.remaining, reset_ms: g.reset_ms },
                (_, None) => LimitState { limit: ask.limit, ..LimitState::default() },
            })
            .collect();
        // The refused limit's index among all the asks, from its index among the remote ones.
        let refused_by = reply.refused_by.and_then(|r| {
            let index = steps.iter().enumerate().filter(|(_, s)| matches!(s, Step::Remote { .. })).nth(r)?.0;
            u32::try_from(index).ok()
        });
        let decision = Decision { granted: false, refused_by, retry_after_ms: reply.retry_after_ms, states };
        Grant { decision, taken: Vec::new(), shared: true }
    }

    fn fall_back(&self, asks: &[Ask]) -> Result<Grant, LimitsError> {
        if let Some(m) = &self.metrics {
            m.fallbacks.inc();
        }
        match self.settings.fallback {
            Fallback::Closed => Err(LimitsError::Unavailable),
            Fallback::Local { replicas } => {
                let divided: Vec<Ask> = asks.iter().map(|a| a.divided(replicas)).collect();
                Ok(self.fallback.acquire(&divided, now_us()))
            }
        }
    }

    /// The Redis key of `ask`'s state: the prefix, then the owner as a hash tag, so that every
    /// key one decision touches (one owner's) lives in one slot of a Redis Cluster, which a
    /// multi-key script needs.
    fn redis_key(&self, ask: &Ask, now_ms: u64) -> String {
        let key = ask.storage_key(now_ms);
        let (owner, rest) = key.split_at(ask.owner_len.min(key.len()));
        // Concatenated, not `format!`ed: this runs for every limit of every decision.
        [self.settings.key_prefix.as_str(), "{", owner, "}", rest].concat()
    }

    /// A slot member's prefix: a request's own hold, or (`None`) this replica's lease.
    fn member(&self, hold: Option<u64>) -> String {
        match hold {
            Some(hold) => format!("{}:{hold}", self.replica),
            None => format!("{}:L", self.replica),
        }
    }

    async fn acquire_remote(
        &self,
        asks: &[Ask],
        keys: &[String],
        steps: &[Step],
        hold: u64,
        wall_ms: u64,
    ) -> Result<Reply, String> {
        let mut connection = self.connection().await?;
        let mut invocation = self.acquire.prepare_invoke();
        let remote = steps.iter().filter(|s| matches!(s, Step::Remote { .. })).count();
        invocation.arg(remote);
        let (held, leased) = (self.member(Some(hold)), self.member(None));
        for ((ask, key), step) in asks.iter().zip(keys).zip(steps) {
            let Step::Remote { need, want, first, leased: is_leased, .. } = step else { continue };
            let (kind, window_end) = match ask.kind {
                Kind::Rate => ("r", 0),
                Kind::Window => ("w", ask.window_end_ms(wall_ms)),
                Kind::Month => ("m", ask.window_end_ms(wall_ms)),
                Kind::Slots => ("s", 0),
            };
            // Leased slots lapse soon unless renewed; a request's own last as long as it may.
            let period = match (ask.kind, self.settings.mode, is_leased) {
                (Kind::Slots, SharedMode::Leased(l), true) => {
                    u64::try_from(l.slot_ttl.as_millis()).unwrap_or(u64::MAX).min(ask.period_ms)
                }
                _ => ask.period_ms,
            };
            invocation.key(key);
            invocation
                .arg(kind)
                .arg(*need)
                .arg(*want)
                .arg(ask.limit)
                .arg(period)
                .arg(ask.burst)
                .arg(if *is_leased { &leased } else { &held })
                .arg(*first)
                .arg(window_end);
        }
        let reply: Vec<i64> = invocation.invoke_async(&mut connection).await.map_err(|e| e.to_string())?;
        let expected = 3 + 3 * remote;
        if reply.len() != expected {
            return Err(format!("the limits script answered {} values, not {expected}", reply.len()));
        }
        let to_u64 = |v: i64| u64::try_from(v).unwrap_or(0);
        let granted = reply[0] == 1;
        Ok(Reply {
            granted,
            refused_by: if granted { None } else { usize::try_from(reply[1]).ok() },
            retry_after_ms: if granted { None } else { u64::try_from(reply[2]).ok() },
            limits: reply[3..]
                .chunks_exact(3)
                .map(|c| Granted { units: to_u64(c[0]), remaining: to_u64(c[1]), reset_ms: to_u64(c[2]) })
                .collect(),
        })
    }

    fn end_leased(&self, taken: &[Taken], ending: Ending) {
        let now_ms = self.elapsed_ms();
        for t in taken.iter().filter(|t| t.leased) {
            self.leases.end(t, t.delta(ending), now_ms);
        }
    }

    /// Ends a hold; what the leases could not absorb goes to Redis now with the rest (this
    /// path waits for the network anyway), not with the next batch.
    async fn end(&self, taken: &[Taken], ending: Ending) {
        self.end_leased(taken, ending);
        let mut changes = self.leases.take_pending();
        changes.extend(
            taken
                .iter()
                .filter(|t| !t.leased)
                .filter_map(|t| {
                    let units = t.delta(ending);
                    let key = t.storage_key.clone();
                    match t.kind {
                        _ if units == 0 => None,
                        Kind::Rate => Some(Change::Rate { key, units, emission_us: t.emission_us() }),
                        Kind::Window | Kind::Month => Some(Change::Count { key, units }),
                        Kind::Slots if units < 0 => Some(Change::Drop { key, members: (1..=t.amount).collect() }),
                        Kind::Slots => None,
                    }
                    .map(|c| (c, t.hold))
                })
                .map(|(c, hold)| self.with_hold(c, hold)),
        );
        self.send(changes).await;
    }

    /// Slot members of a request's own hold are named after the hold, not the lease.
    fn with_hold(&self, change: Change, hold: u64) -> Change {
        match change {
            Change::Drop { key, members } => Change::HeldDrop { key, prefix: self.member(Some(hold)), members },
            other => other,
        }
    }

    /// Sends changes, one script per Redis Cluster hash tag. Skipped while Redis is being left
    /// alone; a failure is logged and counted, and what should have gone back stays taken until
    /// its window, TAT or lease passes, erring on the side of the limit.
    async fn send(&self, changes: Vec<Change>) {
        if changes.is_empty() || self.resting() {
            return;
        }
        let mut groups: Vec<(&str, Vec<&Change>)> = Vec::new();
        for change in &changes {
            let tag = hash_tag(change.key());
            match groups.iter_mut().find(|(t, _)| *t == tag) {
                Some((_, group)) => group.push(change),
                None => groups.push((tag, vec![change])),
            }
        }
        let lease_members = self.member(None);
        for (_, group) in groups {
            let result = tokio::time::timeout(self.settings.timeout, async {
                let mut connection = self.connection().await?;
                let mut invocation = self.change.prepare_invoke();
                invocation.arg(group.len());
                for change in group {
                    invocation.key(change.key());
                    let csv = |prefix: &str, members: &[u64]| {
                        members.iter().map(|m| format!("{prefix}:{m}")).collect::<Vec<_>>().join(",")
                    };
                    match change {
                        Change::Rate { units, emission_us, .. } => {
                            invocation.arg("r").arg(units.to_string()).arg(emission_us.to_string())
                        }
                        Change::Count { units, .. } => invocation.arg("w").arg(units.to_string()).arg(0),
                        Change::Drop { members, .. } => {
                            invocation.arg("d").arg(csv(lease_members.as_str(), members)).arg(0)
                        }
                        Change::HeldDrop { prefix, members, .. } => {
                            invocation.arg("d").arg(csv(prefix.as_str(), members)).arg(0)
                        }
                        Change::Renew { members, ttl_ms, .. } => {
                            invocation.arg("n").arg(csv(lease_members.as_str(), members)).arg(*ttl_ms)
                        }
                    };
                }
                invocation.invoke_async::<i64>(&mut connection).await.map_err(|e| e.to_string())
            })
            .await;
            match result {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => self.failed(&e),
                Err(_) => self.failed("timed out"),
            }
        }
    }
}

/// What a grant took, per ask: leased where a lease served it or was refilled for it.
fn taken(asks: &[Ask], keys: Vec<String>, steps: &[Step], hold: u64) -> Vec<Taken> {
    asks.iter()
        .zip(keys)
        .zip(steps)
        .map(|((a, storage_key), step)| Taken {
            storage_key,
            kind: a.kind,
            amount: a.amount,
            limit: a.limit,
            period_ms: a.period_ms,
            on_settle: a.on_settle,
            hold,
            leased: matches!(step, Step::Local { .. } | Step::Remote { leased: true, .. }),
        })
        .collect()
}

/// The Redis Cluster hash tag of a key (`prefix{owner}rest` → `owner`).
fn hash_tag(key: &str) -> &str {
    key.split_once('{').and_then(|(_, rest)| rest.split_once('}')).map_or(key, |(tag, _)| tag)
}
