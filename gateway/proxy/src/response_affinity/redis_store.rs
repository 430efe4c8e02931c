//! The affinity entries in Redis, shared by the replicas: one string per response,
//! `<key_prefix>affinity:t<len>:<tenant>|<response id>` → the [`Holder`] as JSON, with Redis's
//! own expiry (`SET … EX`). Every call waits at most `[redis] timeout`.

use std::time::Duration;

use redis::AsyncCommands;

use super::{AffinityKey, Holder};
use crate::redis_link::{RedisError, RedisLink};

pub struct RedisStore {
    link: RedisLink,
    prefix: String,
}

impl RedisStore {
    /// Nothing connects until the first call.
    pub fn new(url: &str, key_prefix: &str, timeout: Duration) -> Self {
        let link = RedisLink::new(url, timeout);
        if !link.is_usable() {
            tracing::error!("the [redis] url is not a valid Redis URL; responses' workers are remembered per replica");
        }
        RedisStore { link, prefix: format!("{key_prefix}affinity:") }
    }

    /// The tenant's name goes first with its length, so that no tenant's name and id can spell
    /// another tenant's key.
    fn key(&self, key: &AffinityKey) -> String {
        format!("{}t{}:{}|{}", self.prefix, key.tenant().len(), key.tenant(), key.response_id())
    }

    pub async fn get(&self, key: &AffinityKey) -> Result<Option<Holder>, RedisError> {
        let mut conn = self.link.connection().await?;
        let value = self.link.within(conn.get::<_, Option<Vec<u8>>>(self.key(key))).await?;
        // Written by another version, say: as good as unknown.
        Ok(value.and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }

    pub async fn put(&self, key: &AffinityKey, holder: &Holder, ttl: Duration) -> Result<(), RedisError> {
        let Ok(value) = serde_json::to_vec(holder) else { return Ok(()) };
        let mut conn = self.link.connection().await?;
        let mut set = redis::cmd("SET");
        set.arg(self.key(key)).arg(value).arg("EX").arg(ttl.as_secs().max(1));
        self.link.within(set.query_async::<()>(&mut conn)).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn keys_carry_the_tenant_unambiguously() {
        let store = RedisStore::new("redis://127.0.0.1:1", "sluice:", Duration::from_millis(5));
        let key = |tenant: &str, id: &str| AffinityKey { tenant: Arc::from(tenant), response_id: Box::from(id) };
        assert_eq!(store.key(&key("acme", "resp_1")), "sluice:affinity:t4:acme|resp_1");
        assert_ne!(store.key(&key("a|b", "c")), store.key(&key("a", "b|c")));
    }
}
