//! Active health checks: each endpoint's health path is probed on an interval.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::BodyExt;
use tokio_util::sync::CancellationToken;

use super::client::SendError;
use super::endpoint::Endpoint;
use super::pool::Pool;

/// Probes every endpoint of `pool` until `cancel` fires. The first round runs at once.
pub async fn run(pool: Arc<Pool>, cancel: CancellationToken) {
    let mut interval = tokio::time::interval(pool.config.health.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = interval.tick() => {}
        }
        futures_util::future::join_all(pool.endpoints.iter().map(|e| probe(&pool, e))).await;
        // An endpoint back in service (or out of its ejection) adds slots that no finishing
        // request would hand to the queued ones.
        if let Some(queue) = &pool.queue {
            queue.poke();
        }
    }
}

async fn probe(pool: &Pool, endpoint: &Endpoint) {
    let health = &pool.config.health;
    let ok = match Request::builder().method(Method::GET).uri(endpoint.health_uri().clone()).body(Bytes::new()) {
        Ok(req) => {
            let call = async {
                let resp = match pool.client.send(endpoint.http2, req).await {
                    Ok(resp) => resp,
                    // The gateway is short of file descriptors or memory: the probe says
                    // nothing about the worker, so it is not counted either way.
                    Err(SendError::Local(reason)) => return Err(reason),
                    Err(_) => return Ok(false),
                };
                let ok = resp.status().is_success();
                // Drain the body so the connection goes back to the pool.
                let _ = resp.into_body().collect().await;
                Ok(ok)
            };
            match tokio::time::timeout(health.timeout, call).await {
                Ok(Err(reason)) => {
                    tracing::warn!(pool = %pool.name, endpoint = %endpoint.name, %reason, "health probe not sent");
                    return;
                }
                Ok(Ok(ok)) => ok,
                Err(_) => false,
            }
        }
        Err(_) => false,
    };
    endpoint.record_probe(ok, health.unhealthy_threshold, health.healthy_threshold);
}
