//! The gateway-wide budget of request-body bytes in flight.
//!
//! A body is held, with what parsing and the plugins make of it, from the moment it is read
//! until its request ends (a retry before the first byte sends it again). The per-request limit
//! (`server.max_body_bytes`) bounds one body; this bounds them all together, so a flood of
//! large bodies — from one tenant or many — is refused with a `503` instead of pushing the
//! process toward out-of-memory. Bytes are reserved before they are buffered: a declared
//! `content-length` up front, a chunked body as its frames arrive.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// The budget is kept in units of this many bytes, so that a semaphore's permit count covers
/// any budget a machine could have.
const UNIT: usize = 1024;

/// The shared budget; cheap to clone.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    units: Arc<Semaphore>,
    bytes: usize,
}

/// Bytes held against the budget, given back when dropped (when the request ends).
#[derive(Debug)]
pub struct BodyReservation {
    units: Option<OwnedSemaphorePermit>,
    budget: Arc<Semaphore>,
}

/// The budget has no room for the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetExhausted {
    /// The whole budget, for the error message.
    pub budget_bytes: usize,
}

fn units(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX)
}

impl BodyBudget {
    pub fn new(bytes: usize) -> Self {
        let total = usize::try_from(units(bytes)).unwrap_or(usize::MAX).min(Semaphore::MAX_PERMITS);
        BodyBudget { units: Arc::new(Semaphore::new(total)), bytes }
    }

    /// An empty reservation, to grow as a body's bytes arrive.
    pub fn reservation(&self) -> BodyReservation {
        BodyReservation { units: None, budget: Arc::clone(&self.units) }
    }

    /// Bytes not reserved now.
    pub fn available_bytes(&self) -> usize {
        self.units.available_permits().saturating_mul(UNIT)
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl BodyReservation {
    /// Reserves `bytes` more, or refuses without waiting: a gateway out of room for bodies
    /// answers at once rather than holding connections while it waits for some.
    pub fn grow(&mut self, bytes: usize, budget_bytes: usize) -> Result<(), BudgetExhausted> {
        if bytes == 0 {
            return Ok(());
        }
        let more = match Arc::clone(&self.budget).try_acquire_many_owned(units(bytes)) {
            Ok(permit) => permit,
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => return Err(BudgetExhausted { budget_bytes }),
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_share_the_budget_and_give_it_back_when_dropped() {
        let budget = BodyBudget::new(10 * UNIT);
        let mut a = budget.reservation();
        a.grow(6 * UNIT, budget.bytes()).unwrap();
        let mut b = budget.reservation();
        assert_eq!(b.grow(5 * UNIT, budget.bytes()), Err(BudgetExhausted { budget_bytes: 10 * UNIT }));
        assert_eq!(b.bytes(), 0, "a refused reservation holds nothing");
        b.grow(3 * UNIT, budget.bytes()).unwrap();
        b.grow(1, budget.bytes()).unwrap();
        assert_eq!(b.bytes(), 4 * UNIT, "rounded up to whole units");
        assert_eq!(budget.available_bytes(), 0);
        drop(a);
        assert_eq!(budget.available_bytes(), 6 * UNIT);
        drop(b);
        assert_eq!(budget.available_bytes(), 10 * UNIT);
    }

    #[test]
    fn a_body_larger_than_the_whole_budget_is_refused_not_waited_for() {
        let budget = BodyBudget::new(UNIT);
        let mut r = budget.reservation();
        assert!(r.grow(2 * UNIT, budget.bytes()).is_err());
        assert!(r.grow(0, budget.bytes()).is_ok());
        assert_eq!(budget.available_bytes(), UNIT);
    }
}
