//! Whether the client is reading: a streamed response whose client leaves it unread for the
//! write timeout is cut, with its worker request, even though nothing polls it any more.
//!
//! hyper polls a response body only when the client connection can take more, so a relay whose
//! client stopped reading is simply not polled: its timers do not run and it holds its worker
//! connection and in-flight slot for as long as the client holds the socket. The relay cannot
//! act on that itself; what runs it can. The listener runs each HTTP/1.1 connection and each
//! HTTP/2 stream inside [`Watched`], which installs a [`ClientWatch`] for the relay to find.
//! The relay says when it handed out a frame (the client's turn) and when it is polled again;
//! when the client's turn lasts past the write timeout (or past the exchange's total deadline),
//! [`Watched`] drops the connection or stream, which drops the relay: the worker request is
//! cancelled, the slot released, and the request recorded as cancelled.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::task::futures::TaskLocalFuture;
use tokio::time::{Instant, Sleep};

tokio::task_local! {
    static WATCH: Arc<ClientWatch>;
}

/// The client's turn on one connection (HTTP/1.1) or stream (HTTP/2).
#[derive(Debug)]
pub struct ClientWatch {
    base: Instant,
    write_timeout: Duration,
    /// Milliseconds from `base` at which the client's turn runs out; 0 while it is not its turn.
    cut_at_ms: AtomicU64,
}

impl ClientWatch {
    pub fn new(write_timeout: Duration) -> Arc<Self> {
        Arc::new(ClientWatch { base: Instant::now(), write_timeout, cut_at_ms: AtomicU64::new(0) })
    }

    /// The watch of the task this runs in, if the listener installed one.
    pub(crate) fn current() -> Option<Arc<ClientWatch>> {
        WATCH.try_with(Arc::clone).ok()
    }

    /// A frame was handed out at `now`: the client has until the write timeout (and never past
    /// `total_deadline`) to take it and ask for more.
    pub(crate) fn waiting(&self, now: Instant, total_deadline: Instant) {
        let at = (now + self.write_timeout).min(total_deadline);
        let ms = u64::try_from(at.saturating_duration_since(self.base).as_millis()).unwrap_or(u64::MAX);
        self.cut_at_ms.store(ms.max(1), Ordering::Relaxed);
    }

    /// The relay is being polled again, or is done: not the client's turn.
    pub(crate) fn resumed(&self) {
        self.cut_at_ms.store(0, Ordering::Relaxed);
    }

    fn cut_at(&self) -> Option<Instant> {
        match self.cut_at_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.base + Duration::from_millis(ms)),
        }
    }
}

pin_project_lite::pin_project! {
    /// Runs `inner` (a connection or an HTTP/2 stream) with a [`ClientWatch`] installed, and
    /// drops it once its client has left a response unread past its deadline: the output is
    /// `None` then.
    pub struct Watched<F: Future> {
        #[pin]
        inner: TaskLocalFuture<Arc<ClientWatch>, F>,
        watch: Arc<ClientWatch>,
        timer: Option<(Instant, Pin<Box<Sleep>>)>,
    }
}

impl<F: Future> Watched<F> {
    pub fn new(write_timeout: Duration, inner: F) -> Self {
        let watch = ClientWatch::new(write_timeout);
        Watched { inner: WATCH.scope(Arc::clone(&watch), inner), watch, timer: None }
    }
}

impl<F: Future> Future for Watched<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.inner.poll(cx) {
            return Poll::Ready(Some(output));
        }
        // Checked after the inner future, which is where the relay says whose turn it is.
        let Some(cut_at) = this.watch.cut_at() else { return Poll::Pending };
        let (armed, sleep) = this.timer.get_or_insert_with(|| (cut_at, Box::pin(tokio::time::sleep_until(cut_at))));
        if *armed != cut_at {
            *armed = cut_at;
            sleep.as_mut().reset(cut_at);
        }
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_frame_left_unread_past_the_write_timeout_cuts_the_task() {
        let inner = async {
            let watch = ClientWatch::current().unwrap_or_else(|| ClientWatch::new(Duration::ZERO));
            watch.waiting(Instant::now(), Instant::now() + Duration::from_secs(60));
            std::future::pending::<()>().await;
        };
        let started = Instant::now();
        assert_eq!(Watched::new(Duration::from_secs(2), inner).await, None);
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn the_total_deadline_comes_first_when_it_is_earlier() {
        let inner = async {
            let watch = ClientWatch::current().unwrap_or_else(|| ClientWatch::new(Duration::ZERO));
            watch.waiting(Instant::now(), Instant::now() + Duration::from_millis(500));
            std::future::pending::<()>().await;
        };
        let started = Instant::now();
        assert_eq!(Watched::new(Duration::from_secs(30), inner).await, None);
        assert_eq!(started.elapsed(), Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_keeps_reading_is_never_cut() {
        let inner = async {
            let watch = ClientWatch::current().unwrap_or_else(|| ClientWatch::new(Duration::ZERO));
            for _ in 0..10 {
                watch.waiting(Instant::now(), Instant::now() + Duration::from_secs(60));
                tokio::time::sleep(Duration::from_secs(1)).await;
                watch.resumed();
            }
            7
        };
        assert_eq!(Watched::new(Duration::from_secs(2), inner).await, Some(7));
    }
}
