//! Who owns a stored tenant, API key, pool or endpoint: the config file or the admin API.
//!
//! What the config file declares is reconciled into the store at every start and reload (see
//! `sluice_store::bootstrap`): created or adopted when the file names it, changed when the file
//! changes it, removed (a key: revoked) when the file stops naming it. Everything else belongs
//! to the admin API and the reconciliation never touches it. Stores record the owner in a
//! `managed_by` column and refuse an admin delete of what the file owns
//! ([`StoreError::Conflict`]): the next reload would bring it back, so the place to remove it
//! is the file. Revoking a key is always allowed, whoever owns it.

use crate::keys::KeyDigest;
use crate::{Actor, StoreError};

/// The value of the `managed_by` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Owner {
    Config,
    Api,
}

impl Owner {
    /// Only the config file's reconciliation writes as [`Actor::bootstrap`]; the name is kept
    /// from before ownership was recorded, so the audit log reads the same across the change.
    pub fn of(actor: &Actor) -> Owner {
        if actor.0 == Actor::bootstrap().0 { Owner::Config } else { Owner::Api }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Owner::Config => "config",
            Owner::Api => "api",
        }
    }

    pub fn parse(text: &str) -> Result<Owner, StoreError> {
        match text {
            "config" => Ok(Owner::Config),
            "api" => Ok(Owner::Api),
            other => Err(StoreError::Database(format!("unexpected managed_by {other:?} in the database"))),
        }
    }

    /// The refusal a store answers when `actor` would delete a row the file owns (`stored`:
    /// its `managed_by`); `Ok` when the delete may go ahead.
    pub fn refuse_delete(stored: &str, actor: &Actor, what: &str) -> Result<(), StoreError> {
        if Owner::parse(stored)? == Owner::Config && Owner::of(actor) != Owner::Config {
            return Err(StoreError::Conflict(format!(
                "{what} is declared in the config file, which owns it: remove it there and reload"
            )));
        }
        Ok(())
    }
}

/// A key the config file owns, revoked ones included (so that a file still naming a revoked
/// key is noticed, and the revocation kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedKey {
    pub tenant: String,
    pub id: i64,
    pub prefix: String,
    pub digest: KeyDigest,
    pub revoked: bool,
}

/// Everything the config file owns in a store, read in one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigOwned {
    /// Tenant names.
    pub tenants: Vec<String>,
    pub keys: Vec<OwnedKey>,
    /// Pool names.
    pub pools: Vec<String>,
    /// (pool, endpoint) names.
    pub endpoints: Vec<(String, String)>,
}

/// Something created through the admin API (or before ownership was recorded) that the file
/// now declares, handed to the file by [`crate::Backend::adopt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adopt {
    Tenant(String),
    Key { tenant: String, id: i64 },
    Pool(String),
    Endpoint { pool: String, name: String },
}

impl Adopt {
    /// The audit target, spelt as the other mutations on the same thing spell it.
    pub fn target(&self) -> String {
        match self {
            Adopt::Tenant(name) => name.clone(),
            Adopt::Key { tenant, id } => format!("{tenant}/key/{id}"),
            Adopt::Pool(name) => format!("pool/{name}"),
            Adopt::Endpoint { pool, name } => format!("pool/{pool}/endpoint/{name}"),
        }
    }
}
