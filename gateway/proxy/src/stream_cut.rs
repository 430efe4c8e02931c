//! Ending open streams when shutdown's grace period runs out.
//!
//! A stream still open at the grace deadline would otherwise be dropped mid-event: its client
//! sees a broken connection with no explanation, and its record (dropped with the connection
//! task, or never) misses the usage writer's last flush. Instead the listener cuts its streams:
//! each relay, woken, sends an SSE error event, records its usage (estimated where the worker's
//! never came) and ends its body cleanly, so the record is in the usage writer before the
//! admin plane stops it.
//!
//! The listener installs one [`StreamCuts`] per listener as a task-local (as it does the client
//! watch); a relay registers with it once, when it is built, and checks one flag per poll.
//! Registering costs one short lock per stream, not one per poll: a shared `Notify` would take
//! its lock on every poll of every stream.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Context;

use futures_util::task::AtomicWaker;
use tokio::task::futures::TaskLocalFuture;

tokio::task_local! {
    static CUTS: Arc<StreamCuts>;
}

/// The open streams of one listener, and whether they have been cut.
#[derive(Debug, Default)]
pub struct StreamCuts {
    cut: AtomicBool,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Signal>>>,
}

#[derive(Debug, Default)]
struct Signal {
    cut: AtomicBool,
    waker: AtomicWaker,
}

impl StreamCuts {
    pub fn new() -> Arc<Self> {
        Arc::new(StreamCuts::default())
    }

    /// Runs `future` (a connection or an HTTP/2 stream) with these cuts installed, for the
    /// relays it builds to find.
    pub fn scope<F: Future>(self: &Arc<Self>, future: F) -> TaskLocalFuture<Arc<StreamCuts>, F> {
        CUTS.scope(Arc::clone(self), future)
    }

    /// Tells every open stream (and any started from now on) to end with an error event;
    /// returns how many were open.
    pub fn cut(&self) -> usize {
        self.cut.store(true, Ordering::Release);
        let signals: Vec<Arc<Signal>> = match self.open.lock() {
            Ok(open) => open.values().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().values().cloned().collect(),
        };
        for signal in &signals {
            signal.cut.store(true, Ordering::Release);
            signal.waker.wake();
        }
        signals.len()
    }

    /// Streams registered and not yet dropped.
    pub fn open(&self) -> usize {
        self.open.lock().map_or(0, |open| open.len())
    }

    /// Registers a stream with the cuts of the task this runs in, if the listener installed
    /// them.
    pub(crate) fn register() -> Option<StreamCut> {
        let cuts = CUTS.try_with(Arc::clone).ok()?;
        let signal = Arc::new(Signal { cut: AtomicBool::new(cuts.cut.load(Ordering::Acquire)), ..Signal::default() });
        let id = cuts.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut open) = cuts.open.lock() {
            open.insert(id, Arc::clone(&signal));
        }
        // A cut between the first load and the insert would have missed this stream.
        if cuts.cut.load(Ordering::Acquire) {
            signal.cut.store(true, Ordering::Release);
        }
        Some(StreamCut { cuts, id, signal })
    }
}

/// One stream's registration; dropping it unregisters the stream.
#[derive(Debug)]
pub(crate) struct StreamCut {
    cuts: Arc<StreamCuts>,
    id: u64,
    signal: Arc<Signal>,
}

impl StreamCut {
    /// Whether the stream has been cut (one atomic load).
    pub(crate) fn is_cut(&self) -> bool {
        self.signal.cut.load(Ordering::Acquire)
    }

    /// Whether the stream has been cut; if not, the task is woken when it is. Called by a relay
    /// about to return `Pending`.
    pub(crate) fn poll_cut(&self, cx: &Context<'_>) -> bool {
        if self.is_cut() {
            return true;
        }
        self.signal.waker.register(cx.waker());
        self.is_cut()
    }
}

impl Drop for StreamCut {
    fn drop(&mut self) {
        if let Ok(mut open) = self.cuts.open.lock() {
            open.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::Poll;

    use super::*;

    #[tokio::test]
    async fn a_cut_wakes_a_waiting_stream_and_reaches_streams_started_later() {
        let cuts = StreamCuts::new();
        let (stream, later) = cuts
            .scope(async {
                let stream = StreamCuts::register().unwrap();
                let waiting =
                    std::future::poll_fn(|cx| if stream.poll_cut(cx) { Poll::Ready(()) } else { Poll::Pending });
                let cutter = Arc::clone(&cuts);
                tokio::spawn(async move { cutter.cut() });
                waiting.await;
                (stream, StreamCuts::register().unwrap())
            })
            .await;
        assert!(stream.is_cut());
        assert!(later.is_cut(), "a stream started after the cut is cut at once");
        assert_eq!(cuts.open(), 2);
        drop((stream, later));
        assert_eq!(cuts.open(), 0);
        assert!(StreamCuts::register().is_none(), "no cuts outside a listener's scope");
    }
}
