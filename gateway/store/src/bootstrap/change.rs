//! What a reconciliation changed or could not do, one line each for the log and the reload
//! report. Keys are named by their display prefix (what the admin API lists: at most a third of
//! the key, ending in `…`), never the secret.

use std::fmt;

/// One write the reconciliation made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    TenantCreated {
        tenant: String,
    },
    /// Created through the admin API (or before ownership was recorded); the file now owns it.
    TenantAdopted {
        tenant: String,
    },
    /// `what`: `priority`, `limits`, `model_limits[MODEL]`.
    TenantUpdated {
        tenant: String,
        what: String,
    },
    TenantRemoved {
        tenant: String,
    },
    KeyCreated {
        tenant: String,
        prefix: String,
    },
    KeyAdopted {
        tenant: String,
        prefix: String,
    },
    KeyLimitsSet {
        tenant: String,
        prefix: String,
    },
    KeyRevoked {
        tenant: String,
        prefix: String,
    },
    PoolCreated {
        pool: String,
    },
    PoolAdopted {
        pool: String,
    },
    PoolModelsChanged {
        pool: String,
        models: Vec<String>,
    },
    /// The APIs the pool's workers speak, by name.
    PoolApisChanged {
        pool: String,
        apis: Vec<String>,
    },
    PoolRemoved {
        pool: String,
    },
    EndpointAdded {
        pool: String,
        endpoint: String,
        url: String,
    },
    /// Its URL or protocol changed: removed and added again.
    EndpointReplaced {
        pool: String,
        endpoint: String,
        url: String,
    },
    EndpointAdopted {
        pool: String,
        endpoint: String,
    },
    EndpointRemoved {
        pool: String,
        endpoint: String,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const GONE: &str = "no longer in the config file";
        match self {
            Change::TenantCreated { tenant } => write!(f, "tenant {tenant:?} created"),
            Change::TenantAdopted { tenant } => {
                write!(f, "tenant {tenant:?} (made through the admin API) is now owned by the config file")
            }
            Change::TenantUpdated { tenant, what } => write!(f, "tenant {tenant:?}: {what} set from the config file"),
            Change::TenantRemoved { tenant } => {
                write!(f, "tenant {tenant:?} deleted with its keys, limits and SLOs: {GONE}")
            }
            Change::KeyCreated { tenant, prefix } => write!(f, "key {prefix} of tenant {tenant:?} added"),
            Change::KeyAdopted { tenant, prefix } => {
                write!(f, "key {prefix} of tenant {tenant:?} is now owned by the config file")
            }
            Change::KeyLimitsSet { tenant, prefix } => {
                write!(f, "key {prefix} of tenant {tenant:?}: limits set from the config file")
            }
            Change::KeyRevoked { tenant, prefix } => write!(f, "key {prefix} of tenant {tenant:?} revoked: {GONE}"),
            Change::PoolCreated { pool } => write!(f, "pool {pool:?} created"),
            Change::PoolAdopted { pool } => {
                write!(f, "pool {pool:?} (made through the admin API) is now owned by the config file")
            }
            Change::PoolModelsChanged { pool, models } => write!(f, "pool {pool:?} now serves {models:?}"),
            Change::PoolApisChanged { pool, apis } => write!(f, "pool {pool:?} now speaks {apis:?}"),
            Change::PoolRemoved { pool } => write!(f, "pool {pool:?} deleted with its endpoints: {GONE}"),
            Change::EndpointAdded { pool, endpoint, url } => {
                write!(f, "endpoint {endpoint:?} ({url}) added to pool {pool:?}")
            }
            Change::EndpointReplaced { pool, endpoint, url } => {
                write!(f, "endpoint {endpoint:?} of pool {pool:?} replaced: now {url}")
            }
            Change::EndpointAdopted { pool, endpoint } => {
                write!(
                    f,
                    "endpoint {endpoint:?} of pool {pool:?} (made through the admin API) is now owned by the config file"
                )
            }
            Change::EndpointRemoved { pool, endpoint } => {
                write!(f, "endpoint {endpoint:?} removed from pool {pool:?}: {GONE}")
            }
        }
    }
}

/// Something the file asks for that the store will not do; logged as a warning at each start
/// and reload until the file is fixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Revoked through the admin API or `sluice keys revoke`: a revocation is final.
    KeyRevoked { tenant: String, prefix: String },
    /// The secret is already a key of another tenant (or a revoked key the file does not own).
    KeyTaken { tenant: String, prefix: String },
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::KeyRevoked { tenant, prefix } => write!(
                f,
                "key {prefix} of tenant {tenant:?} is in the config file but was revoked; it stays revoked \
                 (remove it from the file)"
            ),
            Notice::KeyTaken { tenant, prefix } => write!(
                f,
                "key {prefix} listed for tenant {tenant:?} is already stored for another tenant or revoked; \
                 it does not serve {tenant:?} (give the tenant a new key)"
            ),
        }
    }
}
