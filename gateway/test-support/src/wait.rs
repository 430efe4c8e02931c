//! Bounded polling: tests wait for a condition, never for a fixed time.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

const POLL_EVERY: Duration = Duration::from_millis(10);

/// Polls `cond` every 10 ms until it holds (`true`) or `timeout` passes (`false`).
#[must_use = "assert on the result: false means the condition never held"]
pub async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Like [`wait_until`] for conditions that need I/O (an HTTP scrape, a connect attempt). Each
/// check is itself bounded by what is left of `timeout`.
#[must_use = "assert on the result: false means the condition never held"]
pub async fn wait_until_async<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(true) = tokio::time::timeout_at(deadline, cond()).await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}
