//! A pool's admission queue: when every usable endpoint is at its in-flight limit, requests
//! wait here, one FIFO per tenant, and each freed slot goes to the next request by start-time
//! fair queuing (SFQ), so a tenant's burst cannot starve the others.
//!
//! Each request admitted to the pool holds a [`PoolPermit`] until its response ends (it rides in
//! the endpoint's `InFlightGuard`), so the pool never has more requests admitted than the sum of
//! its usable endpoints' limits. A request that finds the queue empty and a slot free is
//! admitted at once without tags; otherwise it is queued with a virtual start tag
//! `max(V, F_tenant)` and finish tag `start + cost`, where `cost` is the inverse of the tenant's
//! weight (priority high 4, normal 2, low 1: costs 1, 2 and 4) and `V` is the start tag of the
//! request admitted last. A freed slot goes to the queued request with the smallest start tag,
//! earlier arrival first on ties. Over any busy period each backlogged tenant receives slots in
//! proportion to its weight, within one request.
//!
//! Bounded: a request waits at most the pool's `queue_timeout`, and the queue holds at most
//! `max_queued` requests; when it is full, the tenant with the longest queue loses its newest
//! request (longest-queue drop), so one tenant's burst cannot fill the queue against the others
//! either. Every path that ends a wait or an admission — admitted, timed out, evicted, the
//! client gone (the waiting future dropped) — settles its count under the queue's lock: there
//! is no slot to leak.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use prometheus::IntGauge;
use sluice_metrics::PoolQueueMetrics;
use sluice_store_model::Priority;

/// How many requests a pool can serve at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capacity {
    /// A usable endpoint has no limit: the pool is never saturated.
    Unlimited,
    /// The sum of the usable endpoints' limits. Zero (no usable endpoint) admits everyone, so
    /// that requests fail at once with "no healthy endpoint" rather than wait.
    Slots(usize),
}

impl Capacity {
    fn has_room(self, admitted: usize) -> bool {
        match self {
            Capacity::Unlimited | Capacity::Slots(0) => true,
            Capacity::Slots(n) => admitted < n,
        }
    }
}

/// Reads the pool's capacity now (endpoints' health changes it).
pub type CapacityFn = Arc<dyn Fn() -> Capacity + Send + Sync>;

/// A request's virtual-time cost: the inverse of its tenant's weight (high 4, normal 2, low 1).
pub fn cost(priority: Priority) -> u64 {
    match priority {
        Priority::High => 1,
        Priority::Normal => 2,
        Priority::Low => 4,
    }
}

/// Why a queued request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueRejection {
    /// It waited the pool's `queue_timeout` without a slot.
    Timeout,
    /// The queue was full, and this tenant's queue was not shorter than the longest.
    QueueFull,
}

impl QueueRejection {
    pub fn label(self) -> &'static str {
        match self {
            QueueRejection::Timeout => "timeout",
            QueueRejection::QueueFull => "queue_full",
        }
    }
}

pub struct FairQueue {
    state: Mutex<State>,
    metrics: PoolQueueMetrics,
}

impl std::fmt::Debug for FairQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("FairQueue").field("admitted", &st.admitted).field("queued", &st.queued).finish()
    }
}

struct State {
    capacity: CapacityFn,
    max_queued: usize,
    /// Permits held: requests admitted to the pool and not finished.
    admitted: usize,
    queued: usize,
    /// Virtual time: the start tag of the request admitted from the queue last.
    vtime: u64,
    next_id: u64,
    /// By tenant. Tenants are bounded by configuration, so flows are kept once made.
    flows: HashMap<Arc<str>, Flow>,
    /// Decisions taken for waiters that have not collected them yet.
    decided: HashMap<u64, Decision>,
}

struct Flow {
    /// Finish tag of the tenant's last queued request.
    finish: u64,
    waiting: VecDeque<Waiter>,
    depth: IntGauge,
}

struct Waiter {
    id: u64,
    start: u64,
    waker: Option<Waker>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Admitted,
    Evicted,
}

/// What [`FairQueue::enter`] did with a request.
enum Entry {
    Admitted(PoolPermit),
    Queued(Waiting),
    Rejected(QueueRejection),
}

impl FairQueue {
    pub fn new(capacity: CapacityFn, max_queued: usize, metrics: PoolQueueMetrics) -> Arc<Self> {
        Arc::new(FairQueue {
            state: Mutex::new(State {
                capacity,
                max_queued: max_queued.max(1),
                admitted: 0,
                queued: 0,
                vtime: 0,
                next_id: 0,
                flows: HashMap::new(),
                decided: HashMap::new(),
            }),
            metrics,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change to the state completes before the lock is released (nothing in it can
        // panic halfway), so a poisoned lock still guards consistent counts.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The pool was rebuilt (the store changed): the same queue and its permits carry over,
    /// counted against the new endpoints.
    pub fn reconfigure(&self, capacity: CapacityFn, max_queued: usize) {
        let mut st = self.lock();
        st.capacity = capacity;
        st.max_queued = max_queued.max(1);
        st.dispatch();
    }

    /// Hands out slots the capacity may have gained without a permit being released (an
    /// endpoint back from ejection or failed health checks).
    pub fn poke(&self) {
        self.lock().dispatch();
    }

    /// A permit for `tenant`'s request: at once when the pool has room and nobody waits,
    /// otherwise after waiting its turn, for at most `timeout`. Dropping the future leaves the
    /// queue (and returns a permit granted in the meantime).
    pub async fn admit(
        self: &Arc<Self>,
        tenant: &str,
        priority: Priority,
        timeout: Duration,
    ) -> Result<PoolPermit, QueueRejection> {
        let waiting = match self.enter(tenant, priority) {
            Entry::Admitted(permit) => return Ok(permit),
            Entry::Rejected(rejection) => {
                self.metrics.reject(tenant, rejection.label());
                return Err(rejection);
            }
            Entry::Queued(waiting) => waiting,
        };
        let started = tokio::time::Instant::now();
        let outcome = tokio::time::timeout(timeout, waiting).await.unwrap_or(Err(QueueRejection::Timeout));
        match &outcome {
            Ok(_) => self.metrics.wait.observe(started.elapsed().as_secs_f64()),
            Err(rejection) => self.metrics.reject(tenant, rejection.label()),
        }
        outcome
    }

    fn enter(self: &Arc<Self>, tenant: &str, priority: Priority) -> Entry {
        let mut st = self.lock();
        if st.queued == 0 && (st.capacity)().has_room(st.admitted) {
            st.admitted += 1;
            return Entry::Admitted(PoolPermit { queue: Arc::clone(self) });
        }
        if st.queued >= st.max_queued && !st.evict_for(tenant) {
            return Entry::Rejected(QueueRejection::QueueFull);
        }
        let id = st.next_id;
        st.next_id += 1;
        let vtime = st.vtime;
        let key = match st.flows.get_key_value(tenant) {
            Some((key, _)) => Arc::clone(key),
            None => {
                let key: Arc<str> = Arc::from(tenant);
                let flow = Flow { finish: 0, waiting: VecDeque::new(), depth: self.metrics.depth(tenant) };
                st.flows.insert(Arc::clone(&key), flow);
                key
            }
        };
        if let Some(flow) = st.flows.get_mut(&key) {
            let start = vtime.max(flow.finish);
            flow.finish = start + cost(priority);
            flow.waiting.push_back(Waiter { id, start, waker: None });
            flow.depth.inc();
        }
        st.queued += 1;
        // Slots may be free while others wait (capacity grew with no release): hand them out.
        st.dispatch();
        Entry::Queued(Waiting { queue: Arc::clone(self), tenant: key, id, done: false })
    }

    /// Requests waiting, by tenant (tenants with none left out).
    pub fn depths(&self) -> Vec<(Arc<str>, usize)> {
        let st = self.lock();
        st.flows.iter().filter(|(_, f)| !f.waiting.is_empty()).map(|(t, f)| (Arc::clone(t), f.waiting.len())).collect()
    }

    /// Permits held now.
    pub fn admitted(&self) -> usize {
        self.lock().admitted
    }

    fn release(&self) {
        let mut st = self.lock();
        st.admitted = st.admitted.saturating_sub(1);
        st.dispatch();
    }
}

impl State {
    /// Admits queued requests while the pool has room, smallest start tag first.
    fn dispatch(&mut self) {
        while self.queued > 0 && (self.capacity)().has_room(self.admitted) {
            let next = self
                .flows
                .values_mut()
                .filter_map(|f| f.waiting.front().map(|w| (w.start, w.id)).map(|key| (key, f)))
                .min_by_key(|(key, _)| *key);
            let Some((_, flow)) = next else { break };
            let Some(waiter) = flow.waiting.pop_front() else { break };
            flow.depth.dec();
            self.queued -= 1;
            self.vtime = self.vtime.max(waiter.start);
            self.admitted += 1;
            self.decided.insert(waiter.id, Decision::Admitted);
            if let Some(waker) = waiter.waker {
                waker.wake();
            }
        }
        self.settle_if_idle();
    }

    /// A busy period ended: virtual time catches up with every tag, so the next one starts
    /// even (a tenant is not charged now for service it had before).
    fn settle_if_idle(&mut self) {
        if self.queued == 0 {
            self.vtime = self.flows.values().map(|f| f.finish).fold(self.vtime, u64::max);
        }
    }

    /// Makes room for `tenant` in a full queue by evicting the newest request of the longest
    /// queue, if that queue is longer than `tenant`'s would become. False: refuse `tenant`.
    fn evict_for(&mut self, tenant: &str) -> bool {
        let own = self.flows.get(tenant).map_or(0, |f| f.waiting.len());
        let Some(longest) = self.flows.values_mut().max_by_key(|f| f.waiting.len()) else { return false };
        if longest.waiting.len() <= own + 1 {
            return false;
        }
        let Some(evicted) = longest.waiting.pop_back() else { return false };
        // It was the tail: its tags are refunded.
        longest.finish = evicted.start;
        longest.depth.dec();
        self.queued -= 1;
        self.decided.insert(evicted.id, Decision::Evicted);
        if let Some(waker) = evicted.waker {
            waker.wake();
        }
        true
    }

    fn leave(&mut self, tenant: &str, id: u64) {
        match self.decided.remove(&id) {
            // Admitted while going away: the permit is returned unused.
            Some(Decision::Admitted) => {
                self.admitted = self.admitted.saturating_sub(1);
                self.dispatch();
            }
            Some(Decision::Evicted) => {}
            None => {
                let Some(flow) = self.flows.get_mut(tenant) else { return };
                let Some(pos) = flow.waiting.iter().position(|w| w.id == id) else { return };
                let last = pos + 1 == flow.waiting.len();
                if let Some(waiter) = flow.waiting.remove(pos)
                    && last
                {
                    flow.finish = waiter.start;
                }
                flow.depth.dec();
                self.queued -= 1;
                self.settle_if_idle();
            }
        }
    }
}

/// A request's place in the queue, resolved when a slot is handed to it or it is evicted.
/// Dropped before that (timeout, client gone), it leaves the queue.
struct Waiting {
    queue: Arc<FairQueue>,
    tenant: Arc<str>,
    id: u64,
    done: bool,
}

impl Future for Waiting {
    type Output = Result<PoolPermit, QueueRejection>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut st = this.queue.lock();
        match st.decided.remove(&this.id) {
            Some(Decision::Admitted) => {
                drop(st);
                this.done = true;
                Poll::Ready(Ok(PoolPermit { queue: Arc::clone(&this.queue) }))
            }
            Some(Decision::Evicted) => {
                drop(st);
                this.done = true;
                Poll::Ready(Err(QueueRejection::QueueFull))
            }
            None => {
                let waiter =
                    st.flows.get_mut(&this.tenant).and_then(|f| f.waiting.iter_mut().find(|w| w.id == this.id));
                match waiter {
                    Some(w) => {
                        match &mut w.waker {
                            Some(waker) if waker.will_wake(cx.waker()) => {}
                            slot => *slot = Some(cx.waker().clone()),
                        }
                        Poll::Pending
                    }
                    // Neither queued nor decided cannot happen; refusing beats waiting forever.
                    None => {
                        drop(st);
                        this.done = true;
                        Poll::Ready(Err(QueueRejection::QueueFull))
                    }
                }
            }
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if !self.done {
            self.queue.lock().leave(&self.tenant, self.id);
        }
    }
}

/// One request admitted to the pool; returned (and the next queued request admitted) on drop.
pub struct PoolPermit {
    queue: Arc<FairQueue>,
}

impl std::fmt::Debug for PoolPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PoolPermit")
    }
}

impl Drop for PoolPermit {
    fn drop(&mut self) {
        self.queue.release();
    }
}

#[cfg(test)]
#[path = "fair_queue_tests.rs"]
mod tests;
