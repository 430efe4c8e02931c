//! A small closed-loop HTTP/1.1 load generator: each worker keeps one keep-alive connection and
//! sends the next request as soon as the previous response has been read in full.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub path: &'static str,
    pub bearer: Option<String>,
    pub body: Bytes,
}

/// Latencies in microseconds.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency_us: Histogram<u64>,
    /// Time to the first body chunk (the first token, for streams).
    pub first_chunk_us: Histogram<u64>,
}

impl Default for LoadResult {
    fn default() -> Self {
        LoadResult { ok: 0, errors: 0, elapsed: Duration::ZERO, latency_us: histogram(), first_chunk_us: histogram() }
    }
}

impl LoadResult {
    fn new() -> Self {
        LoadResult::default()
    }

    /// Adds a run that happened at another time (a slice of a phase): its requests, errors,
    /// latencies and duration.
    pub fn absorb(&mut self, other: &LoadResult) {
        self.merge(other);
        self.elapsed += other.elapsed;
    }

    pub fn requests_per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn merge(&mut self, other: &LoadResult) {
        self.ok += other.ok;
        self.errors += other.errors;
        let _ = self.latency_us.add(&other.latency_us);
        let _ = self.first_chunk_us.add(&other.first_chunk_us);
    }
}

#[expect(clippy::expect_used, reason = "constant bounds that new_with_bounds accepts")]
fn histogram() -> Histogram<u64> {
    // 1 µs .. 10 min at 3 significant figures.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

pub async fn connect(addr: SocketAddr) -> std::io::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends one request on `sender` and reads the whole response; returns (total, first chunk).
pub async fn once(sender: &mut SendRequest<Full<Bytes>>, target: &Target) -> Result<(Duration, Duration), String> {
    let mut builder = Request::post(target.path)
        .header(header::HOST, target.addr.to_string())
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(key) = &target.bearer {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let request = builder.body(Full::new(target.body.clone())).map_err(|e| e.to_string())?;
    sender.ready().await.map_err(|e| e.to_string())?;
    let start = Instant::now();
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let mut body = response.into_body();
    let mut first = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if frame.is_data() && first.is_none() {
            first = Some(start.elapsed());
        }
    }
    let total = start.elapsed();
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    Ok((total, first.unwrap_or(total)))
}

/// Requests on one new keep-alive connection until `deadline` or the first failed request;
/// `Err` when the connection could not be made.
///
/// The connection is driven by the task that sends on it, as in an event-loop client such as
/// wrk: with hyper's connection on a task of its own, every request would pass between two
/// tasks, and the client would spend wake-ups that both the direct and the gateway path pay for.
async fn connection_loop(target: &Target, deadline: Instant, result: &mut LoadResult) -> std::io::Result<()> {
    let stream = TcpStream::connect(target.addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(std::io::Error::other)?;
    let requests = async {
        while Instant::now() < deadline {
            let (total, first) = once(&mut sender, target).await?;
            let _ = result.latency_us.record(total.as_micros().max(1) as u64);
            let _ = result.first_chunk_us.record(first.as_micros().max(1) as u64);
            result.ok += 1;
        }
        Ok::<(), String>(())
    };
    let completed = tokio::select! {
        outcome = requests => outcome.is_ok(),
        // The worker closed the connection, or it broke, while a request was outstanding.
        _ = conn => false,
    };
    if !completed {
        result.errors += 1;
    }
    Ok(())
}

/// Runs `concurrency` closed-loop workers against `target` for `duration`.
pub async fn closed_loop(target: &Target, concurrency: usize, duration: Duration) -> LoadResult {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let target = target.clone();
        workers.spawn(async move {
            let mut result = LoadResult::new();
            while Instant::now() < deadline {
                if connection_loop(&target, deadline, &mut result).await.is_err() {
                    result.errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            result
        });
    }
    let mut total = LoadResult::new();
    while let Some(joined) = workers.join_next().await {
        if let Ok(r) = joined {
            total.merge(&r);
        }
    }
    total.elapsed = started.elapsed();
    total
}
