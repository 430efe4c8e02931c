//! What one request holds: the grants its plugins' `acquire` calls made, per plugin namespace,
//! and their last decisions (for `last-decision`, which an on-response-headers hook turns into
//! headers). Dropping it — the request ended, however it ended — ends every hold still open
//! as [`Ending::Lapse`], so a plugin that trapped, timed out or was never called again leaks no
//! slot.

use std::sync::{Arc, Mutex};

use super::{Decision, Ending, Grant, Limits};
use crate::namespace::Namespace;

#[derive(Debug, Default)]
struct Holds {
    open: Vec<(Namespace, Grant)>,
    last: Vec<(Namespace, Decision)>,
}

/// A request's holds; shared by the request and the plugin calls serving it.
#[derive(Debug)]
pub struct RequestLimits {
    limits: Arc<Limits>,
    holds: Mutex<Holds>,
}

impl RequestLimits {
    pub fn new(limits: Arc<Limits>) -> Arc<Self> {
        Arc::new(RequestLimits { limits, holds: Mutex::new(Holds::default()) })
    }

    pub fn limits(&self) -> &Arc<Limits> {
        &self.limits
    }

    /// Records a decision by `namespace`, and the grant it made, if any.
    pub fn record(&self, namespace: &Namespace, grant: Grant) {
        let Ok(mut holds) = self.holds.lock() else { return };
        holds.last.retain(|(ns, _)| ns != namespace);
        holds.last.push((namespace.clone(), grant.decision.clone()));
        if grant.decision.granted && !grant.taken.is_empty() {
            holds.open.push((namespace.clone(), grant));
        }
    }

    pub fn last_decision(&self, namespace: &Namespace) -> Option<Decision> {
        let holds = self.holds.lock().ok()?;
        holds.last.iter().find(|(ns, _)| ns == namespace).map(|(_, d)| d.clone())
    }

    /// Takes `namespace`'s open holds, to end them.
    pub fn take(&self, namespace: &Namespace) -> Vec<Grant> {
        let Ok(mut holds) = self.holds.lock() else { return Vec::new() };
        let (mine, others) = std::mem::take(&mut holds.open).into_iter().partition(|(ns, _)| ns == namespace);
        holds.open = others;
        mine.into_iter().map(|(_, g)| g).collect()
    }

    /// Ends `namespace`'s open holds as `ending` says.
    pub async fn end(&self, namespace: &Namespace, ending: Ending) {
        for grant in self.take(namespace) {
            self.limits.end(&grant.taken, grant.shared, ending).await;
        }
    }
}

impl Drop for RequestLimits {
    fn drop(&mut self) {
        let open = match self.holds.get_mut() {
            Ok(holds) => std::mem::take(&mut holds.open),
            Err(poisoned) => std::mem::take(&mut poisoned.into_inner().open),
        };
        if open.is_empty() {
            return;
        }
        let remote: Vec<_> =
            open.into_iter().filter(|(_, g)| !self.limits.end_now(&g.taken, g.shared, Ending::Lapse)).collect();
        if remote.is_empty() {
            return;
        }
        let limits = Arc::clone(&self.limits);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    for (_, grant) in remote {
                        limits.end(&grant.taken, grant.shared, Ending::Lapse).await;
                    }
                });
            }
            // No runtime (a tool driving the host by hand): the holds lapse with their windows
            // and leases.
            Err(_) => tracing::debug!("request ended outside a runtime; its shared holds lapse"),
        }
    }
}
