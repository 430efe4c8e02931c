//! A lazily opened connection to `[redis]`, for the state the replicas share outside the rate
//! limits (the response cache's entries, the response affinity's workers): one multiplexed
//! connection that heals itself, opened on first use, and every call bounded by
//! `[redis] timeout`, so that a Redis that is away costs a request at most that long.

use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("the [redis] url is not a valid Redis URL")]
    Url,
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

pub struct RedisLink {
    client: Option<redis::Client>,
    connection: OnceCell<ConnectionManager>,
    timeout: Duration,
}

impl RedisLink {
    /// Nothing connects until the first call. A URL the client refuses makes every call fail
    /// with [`RedisError::Url`] (see [`RedisLink::is_usable`]).
    pub fn new(url: &str, timeout: Duration) -> Self {
        RedisLink { client: redis::Client::open(url).ok(), connection: OnceCell::new(), timeout }
    }

    /// Whether the URL was accepted.
    pub fn is_usable(&self) -> bool {
        self.client.is_some()
    }

    /// The connection, opened on the first call (within the timeout).
    pub async fn connection(&self) -> Result<ConnectionManager, RedisError> {
        let client = self.client.as_ref().ok_or(RedisError::Url)?;
        let timeout = self.timeout;
        let connect = self.connection.get_or_try_init(|| async {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1);
            client.get_connection_manager_with_config(config).await
        });
        match tokio::time::timeout(timeout, connect).await {
            Ok(connection) => Ok(connection?.clone()),
            Err(_) => Err(RedisError::Timeout(timeout)),
        }
    }

    /// Awaits one command, giving up after the timeout.
    pub async fn within<T>(&self, command: impl Future<Output = redis::RedisResult<T>>) -> Result<T, RedisError> {
        match tokio::time::timeout(self.timeout, command).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(RedisError::Timeout(self.timeout)),
        }
    }
}
