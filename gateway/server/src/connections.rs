//! What a listener lets connections hold: how many may be open (all clients, and per client
//! address), and how long one may sit without a request in progress.
//!
//! The caps are checked right after `accept`, before the connection costs anything beyond its
//! socket (no task, no TLS state, no buffers); a refused connection is closed at once and
//! counted. Idleness is measured in requests, not bytes: a connection is idle while no request
//! on it is being handled or answered, so a client trickling bytes cannot keep one alive, and a
//! long stream never counts as idle.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use sluice_metrics::ConnectionMetrics;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Which cap refused a connection; its label in `sluice_connections_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Global,
    PerIp,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Global => "max_connections",
            Refusal::PerIp => "max_connections_per_ip",
        }
    }
}

/// The open connections of one listener, counted against its caps.
pub struct ConnectionBudget {
    max: usize,
    max_per_ip: usize,
    open: AtomicUsize,
    /// Open connections per client address; only kept when the per-address cap is below the
    /// global one (otherwise the global cap decides alone and no map is paid for).
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    metrics: ConnectionMetrics,
}

impl ConnectionBudget {
    pub fn new(max: usize, max_per_ip: usize, metrics: ConnectionMetrics) -> Arc<Self> {
        Arc::new(ConnectionBudget {
            max,
            max_per_ip: max_per_ip.min(max),
            open: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// The listener's connection metrics.
    pub fn metrics(&self) -> &ConnectionMetrics {
        &self.metrics
    }

    /// A place for one more connection from `ip`, held until the permit drops.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionPermit, Refusal> {
        let refused = |reason: Refusal| {
            self.metrics.refuse(reason.label());
            Err(reason)
        };
        if self.open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1)).is_err() {
            return refused(Refusal::Global);
        }
        let client = (self.max_per_ip < self.max).then(|| client_key(ip));
        if let Some(client) = client {
            // A poisoned map only loses the per-address count; the global cap still holds.
            if let Ok(mut per_ip) = self.per_ip.lock() {
                let count = per_ip.entry(client).or_insert(0);
                if *count >= self.max_per_ip {
                    drop(per_ip);
                    self.open.fetch_sub(1, Ordering::AcqRel);
                    return refused(Refusal::PerIp);
                }
                *count += 1;
            }
        }
        self.metrics.open.inc();
        Ok(ConnectionPermit { budget: Arc::clone(self), client })
    }
}

/// The address a per-client cap counts under: IPv4 as it is, IPv6 by its /64 (one host is
/// commonly given a whole /64, so counting single addresses would not cap it).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
    }
}

/// One open connection's place in its listener's budget.
pub struct ConnectionPermit {
    budget: Arc<ConnectionBudget>,
    client: Option<IpAddr>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        if let Some(client) = self.client
            && let Ok(mut per_ip) = self.budget.per_ip.lock()
            && let Some(count) = per_ip.get_mut(&client)
        {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&client);
            }
        }
        self.budget.open.fetch_sub(1, Ordering::AcqRel);
        self.budget.metrics.open.dec();
    }
}

/// Whether a connection has a request in progress, and since when it has had none.
pub struct Activity {
    start: Instant,
    active: AtomicUsize,
    /// Milliseconds from `start` to the moment the last request on it ended.
    idle_since_ms: AtomicU64,
    /// Set once a first request arrived: until then the header read timeout applies.
    served: AtomicBool,
    changed: Notify,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            start: Instant::now(),
            active: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            served: AtomicBool::new(false),
            changed: Notify::new(),
        })
    }

    /// A request began; it is in progress until the guard drops (with its response body).
    pub fn begin(self: &Arc<Self>) -> RequestGuard {
        self.active.fetch_add(1, Ordering::AcqRel);
        self.served.store(true, Ordering::Relaxed);
        RequestGuard(Arc::clone(self))
    }

    /// Resolves once the connection has been without a request for `idle` (`first` before its
    /// first request: a client that connects and sends nothing gets the header read timeout).
    pub async fn idle_for(&self, first: Duration, idle: Duration) {
        loop {
            if self.active.load(Ordering::Acquire) > 0 {
                self.changed.notified().await;
                continue;
            }
            let since = self.idle_since_ms.load(Ordering::Acquire);
            let limit = if self.served.load(Ordering::Relaxed) { idle } else { first };
            tokio::time::sleep_until(self.start + Duration::from_millis(since) + limit).await;
            if self.active.load(Ordering::Acquire) == 0 && self.idle_since_ms.load(Ordering::Acquire) == since {
                return;
            }
        }
    }
}

/// A request in progress on its connection.
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let activity = &self.0;
        let ms = u64::try_from(activity.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        activity.idle_since_ms.store(ms, Ordering::Release);
        if activity.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            // A stored permit wakes a watcher that is not waiting yet, so none is lost.
            activity.changed.notify_one();
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request in progress until hyper drops it, which it does
    /// once the body has been sent (or the connection ended).
    pub struct Tracked<B> {
        #[pin]
        inner: B,
        guard: RequestGuard,
    }
}

impl<B> Tracked<B> {
    pub fn new(inner: B, guard: RequestGuard) -> Self {
        Tracked { inner, guard }
    }
}

impl<B: Body<Data = Bytes>> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    fn budget(max: usize, per_ip: usize) -> (Arc<ConnectionBudget>, sluice_metrics::Metrics) {
        let metrics = sluice_metrics::Metrics::new().unwrap();
        (ConnectionBudget::new(max, per_ip, metrics.connections("data")), metrics)
    }

    #[test]
    fn the_global_cap_refuses_and_a_closed_connection_frees_its_place() {
        let (budget, _) = budget(2, 2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = budget.admit(ip).unwrap();
        let _b = budget.admit("10.0.0.2".parse().unwrap()).unwrap();
        assert_eq!(budget.admit(ip).err(), Some(Refusal::Global));
        drop(a);
        assert!(budget.admit(ip).is_ok());
    }

    #[test]
    fn the_per_address_cap_counts_ipv6_by_its_64() {
        let (budget, _) = budget(10, 2);
        let _a = budget.admit("2001:db8::1".parse().unwrap()).unwrap();
        let _b = budget.admit("2001:db8::2".parse().unwrap()).unwrap();
        assert_eq!(budget.admit("2001:db8::ffff:3".parse().unwrap()).err(), Some(Refusal::PerIp));
        assert!(budget.admit("2001:db8:0:1::1".parse().unwrap()).is_ok(), "another /64");
        let v4 = budget.admit("10.0.0.1".parse().unwrap()).unwrap();
        let _mapped = budget.admit("::ffff:10.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(budget.admit("10.0.0.1".parse().unwrap()).err(), Some(Refusal::PerIp), "mapped is the same");
        drop(v4);
        assert!(budget.admit("10.0.0.1".parse().unwrap()).is_ok());
        assert_eq!(budget.open.load(Ordering::Relaxed), 3, "the permits still held");
    }
}
