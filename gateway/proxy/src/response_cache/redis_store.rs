//! The Redis backend, shared by the replicas: one string per entry (the answer as JSON) with
//! Redis's own expiry. Reads and writes wait at most `[redis] timeout`; an unreachable Redis
//! makes lookups bypass the cache (the request goes to a worker) rather than fail.

use std::time::Duration;

use redis::AsyncCommands;

use super::key::{EntryKey, PurgeScope};
pub use crate::redis_link::RedisError;
use crate::redis_link::RedisLink;

pub struct RedisStore {
    link: RedisLink,
    prefix: String,
}

/// Escapes the glob characters of `SCAN MATCH` in `text`.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl RedisStore {
    /// Nothing connects until the first lookup.
    pub fn new(url: &str, key_prefix: &str, timeout: Duration) -> Self {
        let link = RedisLink::new(url, timeout);
        if !link.is_usable() {
            tracing::error!("the [redis] url is not a valid Redis URL; the response cache is bypassed");
        }
        RedisStore { link, prefix: format!("{key_prefix}cache:") }
    }

    /// `<prefix>cache:t<len>:<tenant>|m<len>:<model>|<namespace>|<hex digest>`: the lengths make
    /// the parts unambiguous, whatever characters names hold.
    fn tenant_prefix(&self, tenant: &str) -> String {
        format!("{}t{}:{tenant}|", self.prefix, tenant.len())
    }

    fn key(&self, key: &EntryKey) -> String {
        let mut k = self.tenant_prefix(&key.tenant);
        k.push_str(&format!("m{}:{}|{}|{}", key.model.len(), key.model, key.namespace, key.hex()));
        k
    }

    pub async fn get(&self, key: &EntryKey) -> Result<Option<Vec<u8>>, RedisError> {
        let mut conn = self.link.connection().await?;
        self.link.within(conn.get::<_, Option<Vec<u8>>>(self.key(key))).await
    }

    pub async fn put(&self, key: &EntryKey, value: Vec<u8>, ttl: Duration) -> Result<(), RedisError> {
        let mut conn = self.link.connection().await?;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.link.within(conn.pset_ex::<_, _, ()>(self.key(key), value, ttl_ms)).await
    }

    /// Removes the entries in `scope` with `SCAN` and `UNLINK` (never `KEYS`, which would stop
    /// Redis for everyone while it walks the keyspace). Returns how many were removed.
    pub async fn purge(&self, scope: &PurgeScope) -> Result<u64, RedisError> {
        let mut conn = self.link.connection().await?;
        let mut pattern = match &scope.tenant {
            Some(t) => glob_escape(&self.tenant_prefix(t)),
            None => format!("{}t*|", glob_escape(&self.prefix)),
        };
        match &scope.model {
            Some(m) => pattern.push_str(&glob_escape(&format!("m{}:{m}|", m.len()))),
            None => pattern.push_str("m*|"),
        }
        pattern.push_str("*|");
        if let Some(p) = &scope.key_prefix {
            pattern.push_str(&glob_escape(p));
        }
        pattern.push('*');
        let mut removed = 0u64;
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            // A tenant or model name holding `|` could make a pattern match a longer name's
            // keys; each key is checked exactly before it goes.
            let keys: Vec<String> = keys.into_iter().filter(|k| self.matches(k, scope)).collect();
            if !keys.is_empty() {
                removed += redis::cmd("UNLINK").arg(&keys).query_async::<u64>(&mut conn).await?;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }

    /// Whether a key of ours (as written by [`Self::key`]) is in `scope`.
    fn matches(&self, key: &str, scope: &PurgeScope) -> bool {
        let Some(rest) = key.strip_prefix(&self.prefix) else { return false };
        let Some((tenant, rest)) = length_prefixed(rest, 't') else { return false };
        let Some((model, rest)) = length_prefixed(rest, 'm') else { return false };
        let digest = rest.rsplit('|').next().unwrap_or_default();
        scope.tenant.as_deref().is_none_or(|t| t == tenant)
            && scope.model.as_deref().is_none_or(|m| m == model)
            && scope.key_prefix.as_deref().is_none_or(|p| digest.starts_with(p))
    }
}

/// Splits `<tag><len>:<text>|rest` into `(text, rest)`.
fn length_prefixed(s: &str, tag: char) -> Option<(&str, &str)> {
    let s = s.strip_prefix(tag)?;
    let (len, rest) = s.split_once(':')?;
    let len: usize = len.parse().ok()?;
    let text = rest.get(..len)?;
    let rest = rest.get(len..)?.strip_prefix('|')?;
    Some((text, rest))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn keys_are_parsed_back_exactly() {
        let store = RedisStore::new("redis://127.0.0.1:1", "sluice:", Duration::from_millis(5));
        let key = EntryKey {
            namespace: Arc::from("plugin:cache"),
            tenant: Arc::from("a|m1:x"),
            model: Arc::from("Qwen/Qwen3:8b*"),
            digest: [0x1f; 32],
        };
        let k = store.key(&key);
        let scope = |t: Option<&str>, m: Option<&str>, p: Option<&str>| PurgeScope {
            tenant: t.map(str::to_owned),
            model: m.map(str::to_owned),
            key_prefix: p.map(str::to_owned),
        };
        assert!(store.matches(&k, &scope(Some("a|m1:x"), Some("Qwen/Qwen3:8b*"), Some("1f1f"))));
        assert!(store.matches(&k, &scope(None, None, None)));
        assert!(!store.matches(&k, &scope(Some("a"), None, None)));
        assert!(!store.matches(&k, &scope(None, Some("Qwen/Qwen3:8b"), None)));
        assert!(!store.matches(&k, &scope(None, None, Some("2"))));
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
