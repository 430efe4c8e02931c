//! Usage aggregates, written in batches off the request path.
//!
//! Each finished request adds to an in-memory row for its tenant, model and minute (one short
//! lock, no I/O). A task flushes the rows every few seconds in one all-or-nothing store call;
//! rows that fail to write are merged back and retried with the next flush, so a database that
//! is briefly down loses nothing. The buffer is bounded: past `max_rows` the oldest minutes
//! are dropped and counted, rather than letting a long outage eat the gateway's memory. On
//! shutdown the writer flushes once more, retrying until its deadline.
//!
//! A request whose worker reported no usage is billed on the gateway's figures
//! ([`sluice_metrics::Estimated`]); its row counts it in `estimated_requests` and its tokens in
//! `estimated_prompt_tokens` / `estimated_completion_tokens` as well as in the totals, so the
//! measured part of a row is its total minus its estimated part.
//!
//! A batch whose commit succeeded but whose reply was lost would be counted twice on retry;
//! that needs a connection to die between COMMIT and its acknowledgement.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_metrics::{RecordSink, RequestRecord, UNKNOWN_LABEL};
use sluice_store_model::{Backend, StoreError, UsageCounts, UsageKey};
use tokio_util::sync::CancellationToken;

use crate::slo::Slos;

/// About 20 MB of pending rows: an hour-long outage of a gateway serving 300 tenant×model
/// pairs.
pub const DEFAULT_MAX_ROWS: usize = 100_000;

/// A pending row's key as the request path builds it: the record's names shared, not copied,
/// and hashed with foldhash (SipHash of two names cost more than the rest of `record`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Row {
    tenant: Arc<str>,
    model: Arc<str>,
    minute: i64,
}

impl Row {
    fn key(&self) -> UsageKey {
        UsageKey { tenant: self.tenant.to_string(), model: self.model.to_string(), minute: self.minute }
    }
}

type Pending = HashMap<Row, UsageCounts, foldhash::fast::RandomState>;

pub struct UsageWriter {
    pending: Mutex<Pending>,
    slos: Arc<Slos>,
    max_rows: usize,
    written_rows: AtomicU64,
    dropped_rows: AtomicU64,
    failed_flushes: AtomicU64,
}

/// Counters for logs, metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UsageStats {
    pub pending_rows: usize,
    pub written_rows: u64,
    pub dropped_rows: u64,
    pub failed_flushes: u64,
}

impl UsageWriter {
    pub fn new(slos: Arc<Slos>, max_rows: usize) -> Self {
        UsageWriter {
            pending: Mutex::new(Pending::default()),
            slos,
            max_rows: max_rows.max(1),
            written_rows: AtomicU64::new(0),
            dropped_rows: AtomicU64::new(0),
            failed_flushes: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> UsageStats {
        UsageStats {
            pending_rows: self.pending.lock().map(|p| p.len()).unwrap_or(0),
            written_rows: self.written_rows.load(Ordering::Relaxed),
            dropped_rows: self.dropped_rows.load(Ordering::Relaxed),
            failed_flushes: self.failed_flushes.load(Ordering::Relaxed),
        }
    }

    /// Adds counts to the row of `key` (its minute in unix seconds, a multiple of 60).
    pub fn add(&self, key: UsageKey, counts: &UsageCounts) {
        self.add_row(Row { tenant: Arc::from(key.tenant), model: Arc::from(key.model), minute: key.minute }, counts);
    }

    fn add_row(&self, row: Row, counts: &UsageCounts) {
        let Ok(mut pending) = self.pending.lock() else { return };
        pending.entry(row).or_default().merge(counts);
        if pending.len() > self.max_rows {
            let dropped = shed_oldest(&mut pending, self.max_rows);
            self.dropped_rows.fetch_add(dropped, Ordering::Relaxed);
        }
    }

    /// Writes everything pending in one batch. On failure the batch is merged back.
    pub async fn flush(&self, store: &dyn Backend) -> Result<usize, StoreError> {
        let batch: Vec<(UsageKey, UsageCounts)> = match self.pending.lock() {
            Ok(mut pending) => {
                std::mem::take(&mut *pending).into_iter().map(|(row, counts)| (row.key(), counts)).collect()
            }
            Err(_) => return Ok(0),
        };
        if batch.is_empty() {
            return Ok(0);
        }
        match store.add_usage(&batch).await {
            Ok(()) => {
                self.written_rows.fetch_add(batch.len() as u64, Ordering::Relaxed);
                Ok(batch.len())
            }
            Err(error) => {
                self.failed_flushes.fetch_add(1, Ordering::Relaxed);
                for (key, counts) in batch {
                    self.add(key, &counts);
                }
                Err(error)
            }
        }
    }

    /// Flushes every `interval` until cancelled, then once more, retrying until `deadline`.
    pub async fn run(
        self: Arc<Self>,
        store: Arc<dyn Backend>,
        interval: Duration,
        deadline: Duration,
        cancel: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = ticker.tick() => {
                    if let Err(error) = self.flush(&*store).await {
                        tracing::warn!(%error, pending = self.stats().pending_rows, "usage flush failed; will retry");
                    }
                }
            }
        }
        let give_up = tokio::time::Instant::now() + deadline;
        loop {
            match self.flush(&*store).await {
                Ok(_) => return,
                Err(error) if tokio::time::Instant::now() + Duration::from_millis(200) < give_up => {
                    tracing::warn!(%error, "final usage flush failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => {
                    tracing::error!(%error, rows = self.stats().pending_rows, "usage rows lost at shutdown");
                    return;
                }
            }
        }
    }
}

impl RecordSink for UsageWriter {
    fn record(&self, record: &RequestRecord) {
        // Requests that never authenticated belong to nobody's bill.
        if &*record.tenant == UNKNOWN_LABEL {
            return;
        }
        let minute = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / 60 * 60);
        let row = Row {
            tenant: Arc::clone(&record.tenant),
            model: Arc::clone(&record.model),
            minute: i64::try_from(minute).unwrap_or(i64::MAX),
        };
        self.add_row(row, &counts_of(record, self.slos.current().met(record)));
    }
}

fn counts_of(record: &RequestRecord, slo_met: bool) -> UsageCounts {
    let tokens = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let us = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    UsageCounts {
        requests: 1,
        errors: i64::from(record.outcome != sluice_metrics::Outcome::Ok),
        prompt_tokens: tokens(record.prompt_tokens),
        cached_tokens: tokens(record.cached_tokens),
        completion_tokens: tokens(record.completion_tokens),
        slo_met: i64::from(slo_met),
        ttft_count: i64::from(record.ttft.is_some()),
        ttft_sum_ms: record.ttft.map_or(0, ms),
        ttft_max_ms: record.ttft.map_or(0, ms),
        tpot_count: i64::from(record.tpot.is_some()),
        tpot_sum_us: record.tpot.map_or(0, us),
        tpot_max_us: record.tpot.map_or(0, us),
        estimated_requests: i64::from(record.estimated.any()),
        estimated_prompt_tokens: if record.estimated.prompt { tokens(record.prompt_tokens) } else { 0 },
        estimated_completion_tokens: if record.estimated.completion { tokens(record.completion_tokens) } else { 0 },
    }
}

/// Removes the rows of the oldest minutes until at most `max_rows` remain; returns how many.
fn shed_oldest(pending: &mut Pending, max_rows: usize) -> u64 {
    let excess = pending.len().saturating_sub(max_rows);
    if excess == 0 {
        return 0;
    }
    let mut keys: Vec<Row> = pending.keys().cloned().collect();
    keys.sort_by_key(|k| k.minute);
    let mut dropped = 0;
    for key in keys.into_iter().take(excess) {
        if let Some(counts) = pending.remove(&key) {
            dropped += 1;
            tracing::error!(tenant = %key.tenant, model = %key.model, minute = key.minute, requests = counts.requests,
                "usage buffer full; dropping the oldest row");
        }
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(minute: i64) -> UsageKey {
        UsageKey { tenant: "acme".into(), model: "m".into(), minute }
    }

    fn row(minute: i64) -> Row {
        Row { tenant: Arc::from("acme"), model: Arc::from("m"), minute }
    }

    #[test]
    fn rows_for_the_same_minute_merge_and_the_buffer_sheds_oldest() {
        let writer = UsageWriter::new(Arc::new(Slos::default()), 2);
        let one = UsageCounts { requests: 1, prompt_tokens: 10, ttft_max_ms: 5, ..Default::default() };
        writer.add(key(60), &one);
        writer.add(key(60), &UsageCounts { requests: 1, prompt_tokens: 5, ttft_max_ms: 9, ..Default::default() });
        writer.add(key(120), &one);
        assert_eq!(writer.stats().pending_rows, 2);
        let pending = writer.pending.lock().unwrap().get(&row(60)).copied().unwrap();
        assert_eq!((pending.requests, pending.prompt_tokens, pending.ttft_max_ms), (2, 15, 9));

        writer.add(key(180), &one);
        let stats = writer.stats();
        assert_eq!((stats.pending_rows, stats.dropped_rows), (2, 1));
        assert!(!writer.pending.lock().unwrap().contains_key(&row(60)), "the oldest minute goes first");
    }
}
