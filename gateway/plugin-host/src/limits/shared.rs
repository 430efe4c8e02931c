//! Limits shared by every replica, in Redis: one atomic Lua script per decision (all the
//! request's limits checked and taken together, on Redis's clock so that replicas agree), one
//! per ending. A per-decision round trip keeps the global limit exact — what passes is what one
//! process with every replica's traffic would pass — at the cost of a loopback or LAN round trip
//! on each request (BENCHMARKS.md).
//!
//! When Redis cannot answer within the timeout, decisions fall back to this process's state
//! with every limit divided by the configured replica count (or are refused, when set to fail
//! closed); Redis is tried again a second later. Holds taken during the fallback end there.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use crate::metrics::LimitsMetrics;

use super::{Ask, Decision, Ending, Grant, Kind, LimitState, LimitsError, Local, Taken, now_us};

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

#[derive(Debug, Clone)]
pub struct SharedSettings {
    /// `redis://` or `rediss://` URL; it may carry a password, so it is never logged.
    pub url: String,
    /// The longest a decision waits for Redis before the fallback.
    pub timeout: Duration,
    pub fallback: Fallback,
    /// Prefix of every key Sluice writes.
    pub key_prefix: String,
}

const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now_us / 1000)
local n = tonumber(ARGV[1])
local out = {1, -1, -1}
local writes = {}
local refused = false
for i = 1, n do
  local b = 1 + (i - 1) * 7
  local kind = ARGV[b + 1]
  local amount = tonumber(ARGV[b + 2])
  local limit = tonumber(ARGV[b + 3])
  local period = tonumber(ARGV[b + 4])
  local burst = tonumber(ARGV[b + 5])
  local member = ARGV[b + 6]
  local wend = tonumber(ARGV[b + 7])
  local key = KEYS[i]
  local remaining, reset, ok, retry = 0, 0, false, -1
  if kind == 'r' then
    local e = period * 1000 / math.max(limit, 1)
    local tat = tonumber(redis.call('GET', key) or now_us)
    if tat < now_us then tat = now_us end
    local cap = burst * e
    local new_tat = tat + amount * e
    if limit == 0 or amount > burst then
      remaining = math.min(burst, math.max(0, math.floor((cap - (tat - now_us)) / e)))
      reset = math.ceil((tat - now_us) / 1000)
    elseif new_tat - cap > now_us then
      remaining = math.max(0, math.floor((cap - (tat - now_us)) / e))
      reset = math.ceil((tat - now_us) / 1000)
      retry = math.max(1, math.ceil((new_tat - cap - now_us) / 1000))
    else
      ok = true
      remaining = math.max(0, math.floor((cap - (new_tat - now_us)) / e))
      reset = math.ceil((new_tat - now_us) / 1000)
      writes[#writes + 1] = {'r', key, new_tat, reset + 1}
    end
  elseif kind == 'w' or kind == 'm' then
    local v = tonumber(redis.call('GET', key) or '0')
    reset = math.max(0, wend - now_ms)
    if v + amount > limit then
      remaining = math.max(0, limit - v)
      if amount <= limit then retry = math.max(1, reset) end
    else
      ok = true
      remaining = limit - v - amount
      writes[#writes + 1] = {'w', key, amount, wend}
    end
  else
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms)
    local used = redis.call('ZCARD', key)
    if used + amount > limit then
      remaining = math.max(0, limit - used)
      if amount <= limit then retry = 1000 end
    else
      ok = true
      remaining = limit - used - amount
      writes[#writes + 1] = {'s', key, member, amount, now_ms + period, period}
    end
  end
  out[#out + 1] = remaining
  out[#out + 1] = reset
  if not ok and not refused then
    refused = true
    out[1] = 0
    out[2] = i - 1
    out[3] = retry
  end
end
if not refused then
  for _, w in ipairs(writes) do
    if w[1] == 'r' then
      redis.call('SET', w[2], string.format('%.3f', w[3]), 'PX', w[4])
    elseif w[1] == 'w' then
      redis.call('INCRBY', w[2], w[3])
      redis.call('PEXPIREAT', w[2], w[4] + 60000)
    else
      for j = 1, w[4] do redis.call('ZADD', w[2], w[5], w[3] .. ':' .. j) end
      redis.call('PEXPIRE', w[2], w[6] + 1000)
    end
  end
end
return out
";

const END: &str = r"
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[1])
for i = 1, n do
  local b = 1 + (i - 1) * 4
  local kind = ARGV[b + 1]
  local delta = tonumber(ARGV[b + 2])
  local x = tonumber(ARGV[b + 3])
  local member = ARGV[b + 4]
  local key = KEYS[i]
  if kind == 'r' then
    local tat = redis.call('GET', key)
    if tat then
      local nt = tonumber(tat) + delta * x
      if nt > now_us then
        redis.call('SET', key, string.format('%.3f', nt), 'PX', math.ceil((nt - now_us) / 1000) + 1)
      else
        redis.call('DEL', key)
      end
    end
  elseif kind == 'w' then
    if redis.call('EXISTS', key) == 1 then
      if redis.call('INCRBY', key, delta) < 0 then redis.call('SET', key, 0, 'KEEPTTL') end
    end
  elseif delta < 0 then
    for j = 1, x do redis.call('ZREM', key, member .. ':' .. j) end
  end
end
return 1
";

/// Limits in Redis, with a local fallback.
pub struct Shared {
    settings: SharedSettings,
    client: Option<redis::Client>,
    connection: OnceCell<ConnectionManager>,
    acquire: redis::Script,
    end: redis::Script,
    /// Decisions while Redis is away.
    fallback: Local,
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
        f.debug_struct("Shared").field("fallback", &self.settings.fallback).field("degraded", &self.degraded()).finish()
    }
}

impl Shared {
    /// A backend for `settings`; nothing connects until the first decision. A URL Redis cannot
    /// parse makes every decision take the fallback (and is logged once).
    pub fn new(settings: SharedSettings, metrics: Option<LimitsMetrics>) -> Self {
        let client = match redis::Client::open(settings.url.as_str()) {
            Ok(c) => Some(c),
            Err(_) => {
                tracing::error!("the [redis] url is not a valid Redis URL; rate limits use the fallback");
                None
            }
        };
        let replica = format!("{:x}", now_us() ^ (u64::from(std::process::id()) << 40));
        Shared {
            settings,
            client,
            connection: OnceCell::new(),
            acquire: redis::Script::new(ACQUIRE),
            end: redis::Script::new(END),
            fallback: Local::default(),
            degraded: AtomicBool::new(false),
            retry_at_ms: AtomicU64::new(0),
            clock: Instant::now(),
            replica,
            next_hold: AtomicU64::new(0),
            metrics,
        }
    }

    /// Whether decisions are being made without Redis now.
    pub fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    pub fn fallback_policy(&self) -> Fallback {
        self.settings.fallback
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    async fn connection(&self) -> Result<ConnectionManager, String> {
        let client = self.client.as_ref().ok_or("invalid Redis URL")?;
        let timeout = self.settings.timeout;
        self.connection
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1);
                client.get_connection_manager_with_config(config).await
            })
            .await
            .cloned()
            .map_err(|e| e.to_string())
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

    pub async fn acquire(&self, asks: &[Ask], timeout: Duration) -> Result<Grant, LimitsError> {
        if self.degraded() && self.elapsed_ms() < self.retry_at_ms.load(Ordering::Relaxed) {
            return self.fall_back(asks);
        }
        let started = Instant::now();
        let hold = self.next_hold.fetch_add(1, Ordering::Relaxed) + 1;
        let now_ms = now_us() / 1000;
        let result =
            tokio::time::timeout(timeout.min(self.settings.timeout), self.acquire_remote(asks, hold, now_ms)).await;
        match result {
            Ok(Ok(grant)) => {
                if let Some(m) = &self.metrics {
                    m.backend_seconds.observe(started.elapsed().as_secs_f64());
                }
                self.recovered();
                Ok(grant)
            }
            Ok(Err(e)) => {
                self.failed(&e);
                self.fall_back(asks)
            }
            Err(_) => {
                self.failed("timed out");
                self.fall_back(asks)
            }
        }
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

    fn member(&self, hold: u64) -> String {
        format!("{}:{hold}", self.replica)
    }

    async fn acquire_remote(&self, asks: &[Ask], hold: u64, now_ms: u64) -> Result<Grant, String> {
        let mut connection = self.connection().await?;
        let mut invocation = self.acquire.prepare_invoke();
        invocation.arg(asks.len());
        let mut keys = Vec::with_capacity(asks.len());
        let member = self.member(hold);
        for ask in asks {
            let key = self.redis_key(ask, now_ms);
            let kind = match ask.kind {
                Kind::Rate => "r",
                Kind::Window => "w",
                Kind::Month => "m",
                Kind::Slots => "s",
            };
            let window_end = match ask.kind {
                Kind::Window | Kind::Month => ask.window_end_ms(now_ms),
                Kind::Rate | Kind::Slots => 0,
            };
            invocation.key(&key);
            invocation
                .arg(kind)
                .arg(ask.amount)
                .arg(ask.limit)
                .arg(ask.period_ms)
                .arg(ask.burst)
                .arg(&member)
                .arg(window_end);
            keys.push(key);
        }
        let reply: Vec<i64> = invocation.invoke_async(&mut connection).await.map_err(|e| e.to_string())?;
        let expected = 3 + 2 * asks.len();
        if reply.len() != expected {
            return Err(format!("the limits script answered {} values, not {expected}", reply.len()));
        }
        let to_u64 = |v: i64| u64::try_from(v).unwrap_or(0);
        let states = asks
            .iter()
            .enumerate()
            .map(|(i, a)| LimitState {
                limit: a.limit,
                remaining: to_u64(reply[3 + 2 * i]),
                reset_ms: to_u64(reply[4 + 2 * i]),
            })
            .collect();
        let granted = reply[0] == 1;
        let decision = Decision {
            granted,
            refused_by: if granted { None } else { u32::try_from(reply[1]).ok() },
            retry_after_ms: if granted { None } else { u64::try_from(reply[2]).ok() },
            states,
        };
        let taken = if granted {
            asks.iter()
                .zip(keys)
                .map(|(a, storage_key)| Taken {
                    storage_key,
                    kind: a.kind,
                    amount: a.amount,
                    limit: a.limit,
                    period_ms: a.period_ms,
                    on_settle: a.on_settle,
                    hold,
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(Grant { decision, taken, shared: true })
    }

    /// Ends a hold taken from Redis. A failure is logged and counted: what was taken stays
    /// taken until its window or lease runs out, erring on the side of the limit.
    pub async fn end(&self, taken: &[Taken], ending: Ending) {
        let changes: Vec<&Taken> = taken.iter().filter(|t| t.delta(ending) != 0).collect();
        if changes.is_empty() {
            return;
        }
        let result = tokio::time::timeout(self.settings.timeout, async {
            let mut connection = self.connection().await?;
            let mut invocation = self.end.prepare_invoke();
            invocation.arg(changes.len());
            for t in &changes {
                invocation.key(&t.storage_key);
                let (kind, x) = match t.kind {
                    Kind::Rate => ("r", t.emission_us().to_string()),
                    Kind::Window | Kind::Month => ("w", "0".to_owned()),
                    Kind::Slots => ("s", t.amount.to_string()),
                };
                invocation.arg(kind).arg(t.delta(ending).to_string()).arg(x).arg(self.member(t.hold));
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

    /// Ends a hold taken from the fallback.
    pub fn end_fallback(&self, taken: &[Taken], ending: Ending, now_us: u64) {
        self.fallback.end(taken, ending, now_us);
    }
}
