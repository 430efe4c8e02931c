//! Revoking an API key by what an operator has at hand — its id, its display prefix or its
//! name, as `sluice key list` shows them — straight in the store (`sluice revoke-key`), so a key
//! can be revoked while the admin API is down or its token lost. Works on every key, whether
//! the config file or the admin API owns it; a key still listed in the file stays revoked.

use crate::{Actor, ApiKey, Backend, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("tenant {tenant:?} has no key with id, prefix or name {key:?}")]
    NoSuchKey { tenant: String, key: String },
    /// Several live keys share the prefix or the name: revoking all of them on a guess could
    /// lock out the wrong client.
    #[error("{key:?} matches {} keys of tenant {tenant:?} (ids {}); name one by its id", ids.len(), join(ids))]
    Ambiguous { tenant: String, key: String, ids: Vec<i64> },
}

fn join(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
}

/// What a revocation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    pub key: ApiKey,
    /// It had been revoked before (nothing was written).
    pub already: bool,
}

/// Revokes the one key of `tenant` that `key` names: an id, else a display prefix or a name
/// matched exactly. Live keys are preferred, so a prefix shared with a revoked key still names
/// the live one; a key revoked before is returned as it is.
pub async fn revoke_key(store: &dyn Backend, actor: &Actor, tenant: &str, key: &str) -> Result<Revoked, RevokeError> {
    let keys = store.list_keys(tenant).await?;
    let by_id = key.parse::<i64>().ok();
    // Config keys' prefixes end in `…` (see [`crate::keys::display_prefix`]); typing it is optional.
    let prefix = key.trim_end_matches('…');
    let matches =
        |k: &&ApiKey| Some(k.id) == by_id || k.prefix.trim_end_matches('…') == prefix || k.name.as_deref() == Some(key);
    let live: Vec<&ApiKey> = keys.iter().filter(|k| k.revoked_at.is_none()).filter(matches).collect();
    let found = match live.as_slice() {
        [one] => *one,
        [] => match keys.iter().find(matches) {
            Some(revoked) => return Ok(Revoked { key: revoked.clone(), already: true }),
            None => return Err(RevokeError::NoSuchKey { tenant: tenant.to_owned(), key: key.to_owned() }),
        },
        several => {
            let ids = several.iter().map(|k| k.id).collect();
            return Err(RevokeError::Ambiguous { tenant: tenant.to_owned(), key: key.to_owned(), ids });
        }
    };
    let revoked = store.revoke_key(actor, tenant, found.id).await?;
    Ok(Revoked { key: revoked, already: false })
}
