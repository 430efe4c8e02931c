//! The host capabilities, with small conveniences over the raw imports.

/// Capability `log`.
pub mod log {
    pub use crate::bindings::sluice::policy::log::{Level, log};

    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }

    pub fn info(message: &str) {
        log(Level::Info, message);
    }

    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }

    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

/// Capability `clock`: monotonic nanoseconds.
pub mod clock {
    pub use crate::bindings::sluice::policy::clock::monotonic_now;
}

/// Capability `counters`: atomic windowed counters. The host keeps every key in this plugin's
/// namespace; the `*_scoped` functions choose between the binding's state and the current
/// request's tenant's ([`StateScope`]).
pub mod counters {
    pub use crate::bindings::sluice::policy::counters::{
        Reservation, get, get_scoped, release, reserve, reserve_scoped, settle,
    };
    pub use crate::bindings::sluice::policy::types::StateScope;
}

/// Capability `limits`: rate limits, windows, monthly quotas and concurrency slots, checked
/// together and held by the current request; shared by every gateway replica when the gateway
/// has a Redis. The host ends a request's holds when it ends, so nothing leaks.
pub mod limits {
    pub use crate::bindings::sluice::policy::limits::{
        Decision, Error, Limit, LimitKind, LimitState, OnSettle, StandingAmount, StandingLimit, acquire,
        acquire_standing, last_decision, release, set_ratelimit_headers, set_response_headers, settle,
    };
    pub use crate::bindings::sluice::policy::types::StateScope;
}

/// Capability `cache`. Keys are namespaced as for [`counters`].
pub mod cache {
    pub use crate::bindings::sluice::policy::cache::{get, get_scoped, put, put_scoped};
    pub use crate::bindings::sluice::policy::types::StateScope;
}

/// Capability `response-cache`: serve a request from the host's response cache, or store its
/// answer there. The host computes the key (in the request's tenant's namespace), replays entries
/// as whole bodies or streams, and stores only answers that completed successfully.
pub mod response_cache {
    pub use crate::bindings::sluice::policy::response_cache::{CacheRequest, Mode, Semantic, bypass, use_cache};
}

/// Capability `config`: the binding's JSON config and tenant settings.
pub mod config {
    pub use crate::bindings::sluice::policy::config::{binding, tenant};
}

/// Capability `metrics`.
pub mod metrics {
    pub use crate::bindings::sluice::policy::metrics::{counter_add, histogram_observe};
}

/// Capability `embeddings`.
pub mod embeddings {
    pub use crate::bindings::sluice::policy::embeddings::embed;
}

/// Capability `http`: outbound requests to the binding's allow-list.
pub mod http {
    pub use crate::bindings::sluice::policy::http::{OutboundRequest, OutboundResponse, send};
}
