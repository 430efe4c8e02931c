//! The gateway-wide budget of request-body bytes in flight, and each tenant's share of it.
//!
//! A body is held, with what parsing and the plugins make of it, from the moment it is read
//! until its request ends (a retry before the first byte sends it again). The per-request limit
//! (`server.max_body_bytes`) bounds one body; this bounds them all together, so a flood of
//! large bodies is refused with a `503` instead of pushing the process toward out-of-memory.
//! Each tenant may hold at most its share of the budget (`server.max_inflight_body_bytes_per_tenant`),
//! so one tenant's flood is refused with a `429` while others' bodies still fit. Bytes are
//! reserved before they are buffered: a declared `content-length` up front, a chunked body as
//! its frames arrive.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// The budget is kept in units of this many bytes, so that a semaphore's permit count covers
/// any budget a machine could have.
const UNIT: usize = 1024;

type TenantBytes = HashMap<Arc<str>, Arc<AtomicUsize>, foldhash::fast::RandomState>;

/// The shared budget; cheap to clone.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    units: Arc<Semaphore>,
    bytes: usize,
    tenant_share: usize,
    /// Bytes held by each tenant, by name. The host keys it by the authenticated tenant, so
    /// one tenant's bodies never count against another's share. Entries stay (one per tenant
    /// ever seen, a few dozen bytes each) so a counter outlives snapshot reloads.
    tenants: Arc<RwLock<TenantBytes>>,
}

/// Bytes held against the budget and the tenant's share, given back when dropped (when the
/// request ends).
#[derive(Debug)]
pub struct BodyReservation {
    units: Option<OwnedSemaphorePermit>,
    budget: Arc<Semaphore>,
    budget_bytes: usize,
    tenant: Arc<AtomicUsize>,
    tenant_share: usize,
}

/// Why a body could not be reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The tenant's bodies in flight already fill its share.
    TenantShare { share_bytes: usize },
    /// All bodies in flight already fill the budget.
    Budget { budget_bytes: usize },
}

fn units(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX)
}

impl BodyBudget {
    /// `tenant_share` is clamped to the budget.
    pub fn new(bytes: usize, tenant_share: usize) -> Self {
        let total = usize::try_from(units(bytes)).unwrap_or(usize::MAX).min(Semaphore::MAX_PERMITS);
        BodyBudget {
            units: Arc::new(Semaphore::new(total)),
            bytes,
            tenant_share: tenant_share.min(bytes),
            tenants: Arc::default(),
        }
    }

    /// An empty reservation for one of `tenant`'s requests, to grow as its body's bytes arrive.
    pub fn reservation(&self, tenant: &Arc<str>) -> BodyReservation {
        BodyReservation {
            units: None,
            budget: Arc::clone(&self.units),
            budget_bytes: self.bytes,
            tenant: self.tenant_counter(tenant),
            tenant_share: self.tenant_share,
        }
    }

    fn tenant_counter(&self, tenant: &Arc<str>) -> Arc<AtomicUsize> {
        // A poisoned lock only means a writer panicked between two map operations; the map is
        // still consistent, so keep using it.
        let known = self.tenants.read().unwrap_or_else(|e| e.into_inner()).get(tenant).cloned();
        known.unwrap_or_else(|| {
            let mut tenants = self.tenants.write().unwrap_or_else(|e| e.into_inner());
            Arc::clone(tenants.entry(Arc::clone(tenant)).or_default())
        })
    }

    /// Bytes not reserved now.
    pub fn available_bytes(&self) -> usize {
        self.units.available_permits().saturating_mul(UNIT)
    }

    /// Bytes `tenant`'s bodies hold now.
    pub fn tenant_bytes(&self, tenant: &str) -> usize {
        let tenants = self.tenants.read().unwrap_or_else(|e| e.into_inner());
        tenants.get(tenant).map_or(0, |held| held.load(Ordering::Acquire))
    }
}

impl BodyReservation {
    /// Reserves `bytes` more, or refuses without waiting: a gateway out of room for bodies
    /// answers at once rather than holding connections while it waits for some.
    pub fn grow(&mut self, bytes: usize) -> Result<(), Refusal> {
        if bytes == 0 {
            return Ok(());
        }
        let wanted = units(bytes);
        let wanted_bytes = usize::try_from(wanted).unwrap_or(usize::MAX).saturating_mul(UNIT);
        // The whole budget first: when it is full, every tenant is told the gateway is.
        let more = match Arc::clone(&self.budget).try_acquire_many_owned(wanted) {
            Ok(permit) => permit,
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => {
                return Err(Refusal::Budget { budget_bytes: self.budget_bytes });
            }
        };
        let share = self.tenant_share;
        // On refusal `more` drops here, giving its units back.
        self.tenant
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(wanted_bytes).filter(|&after| after <= share)
            })
            .map_err(|_| Refusal::TenantShare { share_bytes: share })?;
        match &mut self.units {
            Some(held) => held.merge(more),
            None => self.units = Some(more),
        }
        Ok(())
    }

    /// Bytes reserved (rounded up to the budget's unit).
    pub fn bytes(&self) -> usize {
        self.units.as_ref().map_or(0, |p| p.num_permits().saturating_mul(UNIT))
    }
}

impl Drop for BodyReservation {
    fn drop(&mut self) {
        // The semaphore's permits go back by themselves; the tenant's count is ours to undo.
        self.tenant.fetch_sub(self.bytes(), Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    #[test]
    fn reservations_share_the_budget_and_give_it_back_when_dropped() {
        let budget = BodyBudget::new(10 * UNIT, 10 * UNIT);
        let mut a = budget.reservation(&tenant("acme"));
        a.grow(6 * UNIT).unwrap();
        let mut b = budget.reservation(&tenant("globex"));
        assert_eq!(b.grow(5 * UNIT), Err(Refusal::Budget { budget_bytes: 10 * UNIT }));
        assert_eq!(b.bytes(), 0, "a refused reservation holds nothing");
        assert_eq!(budget.tenant_bytes("globex"), 0, "nor counts against its tenant");
        b.grow(3 * UNIT).unwrap();
        b.grow(1).unwrap();
        assert_eq!(b.bytes(), 4 * UNIT, "rounded up to whole units");
        assert_eq!(budget.available_bytes(), 0);
        drop(a);
        assert_eq!(budget.available_bytes(), 6 * UNIT);
        assert_eq!(budget.tenant_bytes("acme"), 0);
        drop(b);
        assert_eq!(budget.available_bytes(), 10 * UNIT);
        assert_eq!(budget.tenant_bytes("globex"), 0);
    }

    #[test]
    fn a_tenant_cannot_hold_more_than_its_share() {
        let budget = BodyBudget::new(10 * UNIT, 4 * UNIT);
        let mut first = budget.reservation(&tenant("acme"));
        first.grow(3 * UNIT).unwrap();
        let mut second = budget.reservation(&tenant("acme"));
        assert_eq!(second.grow(2 * UNIT), Err(Refusal::TenantShare { share_bytes: 4 * UNIT }));
        second.grow(UNIT).unwrap();
        assert_eq!(budget.tenant_bytes("acme"), 4 * UNIT);
        // Another tenant still finds room, up to its own share.
        let mut other = budget.reservation(&tenant("globex"));
        other.grow(4 * UNIT).unwrap();
        assert_eq!(budget.available_bytes(), 2 * UNIT);
        drop(first);
        assert_eq!(budget.tenant_bytes("acme"), UNIT);
        assert_eq!(budget.available_bytes(), 5 * UNIT);
    }

    #[test]
    fn a_body_larger_than_the_whole_budget_is_refused_not_waited_for() {
        let budget = BodyBudget::new(UNIT, UNIT);
        let mut r = budget.reservation(&tenant("acme"));
        assert!(r.grow(2 * UNIT).is_err());
        assert!(r.grow(0).is_ok());
        assert_eq!(budget.available_bytes(), UNIT);
        assert_eq!(budget.tenant_bytes("acme"), 0);
    }
}
