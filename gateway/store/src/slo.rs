//! Each tenant's latency objectives, looked up per finished request to count goodput.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use sluice_metrics::{Outcome, RequestRecord};
use sluice_store_model::{Slo, StoreSnapshot};

/// The targets that apply to one tenant and model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SloTarget {
    pub ttft: Option<Duration>,
    pub tpot: Option<Duration>,
    pub attainment: f64,
}

impl SloTarget {
    fn of(slo: &Slo) -> Self {
        SloTarget {
            ttft: slo.ttft_p95_ms.map(|ms| Duration::from_millis(u64::from(ms))),
            tpot: slo.tpot_p95_ms.map(|ms| Duration::from_millis(u64::from(ms))),
            attainment: slo.target_attainment,
        }
    }
}

/// tenant → model (or `*`) → target, rebuilt from each snapshot.
#[derive(Debug, Default)]
pub struct SloTable {
    by_tenant: HashMap<String, HashMap<String, SloTarget>>,
}

impl SloTable {
    pub fn from_snapshot(snapshot: &StoreSnapshot) -> Self {
        let by_tenant = snapshot
            .tenants
            .iter()
            .filter(|t| !t.slos.is_empty())
            .map(|t| (t.tenant.name.clone(), t.slos.iter().map(|s| (s.model.clone(), SloTarget::of(s))).collect()))
            .collect();
        SloTable { by_tenant }
    }

    /// The model's own target, else the tenant's `*` target.
    pub fn target(&self, tenant: &str, model: &str) -> Option<SloTarget> {
        let models = self.by_tenant.get(tenant)?;
        models.get(model).or_else(|| models.get("*")).copied()
    }

    /// Whether a finished request counts as goodput: it succeeded and met every target that
    /// applies. A whole (non-streamed) response's first token arrives with the response, so
    /// its TTFT is its end-to-end time; TPOT exists for streams only. Without targets, a
    /// success is goodput. (The live view applies the same rule, `sluice_live::SloTarget::met_by`.)
    pub fn met(&self, record: &RequestRecord) -> bool {
        if record.outcome != Outcome::Ok {
            return false;
        }
        let Some(target) = self.target(&record.tenant, &record.model) else { return true };
        let within = |limit: Option<Duration>, measured: Option<Duration>| match (limit, measured) {
            (Some(limit), Some(value)) => value <= limit,
            _ => true,
        };
        let ttft = record.ttft.or((!record.stream).then_some(record.e2e));
        within(target.ttft, ttft) && within(target.tpot, record.tpot)
    }
}

/// The current table, swapped by the watcher and read by the usage writer and the live view.
#[derive(Debug, Default)]
pub struct Slos(ArcSwap<SloTable>);

impl Slos {
    pub fn current(&self) -> Arc<SloTable> {
        self.0.load_full()
    }

    pub fn replace(&self, table: SloTable) {
        self.0.store(Arc::new(table));
    }
}
