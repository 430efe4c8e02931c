//! The response affinity's metric families (see docs/metrics.md).

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// What became of a request continuing a stored response (`previous_response_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUp {
    /// Sent to the endpoint that made the response.
    Pinned,
    /// No replica knew the response (for this tenant): routed as usual.
    NotFound,
    /// Its endpoint left the pool or is unavailable (unhealthy, ejected, drained): routed as
    /// usual.
    Unavailable,
}

impl FollowUp {
    pub const ALL: [FollowUp; 3] = [FollowUp::Pinned, FollowUp::NotFound, FollowUp::Unavailable];

    pub fn as_str(self) -> &'static str {
        match self {
            FollowUp::Pinned => "pinned",
            FollowUp::NotFound => "not_found",
            FollowUp::Unavailable => "unavailable",
        }
    }
}

#[derive(Clone)]
pub struct AffinityMetrics {
    followups: IntCounterVec,
    backend_errors: IntCounter,
}

impl AffinityMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = AffinityMetrics {
            followups: IntCounterVec::new(
                Opts::new(
                    "sluice_response_followups_total",
                    "Responses API requests continuing a stored response, by whether they went to its worker",
                ),
                &["result"],
            )?,
            backend_errors: IntCounter::new(
                "sluice_response_affinity_backend_errors_total",
                "Failed or timed-out Redis calls of the response affinity",
            )?,
        };
        // A fixed vocabulary starts at zero, so that its series exist before the first event.
        for result in FollowUp::ALL {
            m.followups.with_label_values(&[result.as_str()]);
        }
        registry.register(Box::new(m.followups.clone()))?;
        registry.register(Box::new(m.backend_errors.clone()))?;
        Ok(m)
    }

    pub fn followup(&self, result: FollowUp) {
        self.followups.with_label_values(&[result.as_str()]).inc();
    }

    pub fn backend_error(&self) {
        self.backend_errors.inc();
    }

    pub fn backend_errors(&self) -> u64 {
        self.backend_errors.get()
    }
}
