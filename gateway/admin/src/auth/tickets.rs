//! Tickets for the live stream: a browser's `EventSource` cannot send an `Authorization`
//! header, and the admin token must not travel in a URL (it would land in access logs, proxy
//! logs and the browser's history). So the dashboard trades its token for a ticket
//! (`POST /admin/api/live/ticket`) and opens `/admin/api/live?ticket=…`.
//!
//! A ticket is 256 random bits, good for one stream opened within [`TICKET_TTL`] and for
//! nothing else; only its SHA-256 digest is kept, in memory, so neither a heap dump nor a
//! logged URL gives a usable credential for long.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;
use sha2::{Digest, Sha256};

/// How long a ticket may wait before it opens a stream.
pub const TICKET_TTL: Duration = Duration::from_secs(60);
/// Tickets outstanding at once; past it the one closest to expiring is dropped. Only holders
/// of the admin token can ask for tickets, so this only bounds a runaway client.
const MAX_OUTSTANDING: usize = 1024;

type Digest32 = [u8; 32];

pub(crate) struct Tickets {
    outstanding: Mutex<HashMap<Digest32, Instant>>,
}

impl Tickets {
    pub(crate) fn new() -> Self {
        Tickets { outstanding: Mutex::new(HashMap::new()) }
    }

    /// A new ticket (64 hex digits), valid until `now + TICKET_TTL`.
    pub(crate) fn issue(&self, now: Instant) -> String {
        let ticket = hex::encode(rand::rng().random::<[u8; 32]>());
        let mut outstanding = self.outstanding.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        outstanding.retain(|_, expires| *expires > now);
        if outstanding.len() >= MAX_OUTSTANDING
            && let Some(oldest) = outstanding.iter().min_by_key(|(_, expires)| **expires).map(|(d, _)| *d)
        {
            outstanding.remove(&oldest);
        }
        outstanding.insert(digest(&ticket), now + TICKET_TTL);
        ticket
    }

    /// Whether `ticket` was issued, has not expired and was not used yet; it is used up either way.
    pub(crate) fn redeem(&self, ticket: &str, now: Instant) -> bool {
        let mut outstanding = self.outstanding.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // The lookup is by digest: how long it takes says nothing about the tickets held.
        outstanding.remove(&digest(ticket)).is_some_and(|expires| expires > now)
    }
}

fn digest(ticket: &str) -> Digest32 {
    Sha256::digest(ticket.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_opens_one_stream_within_its_lifetime() {
        let tickets = Tickets::new();
        let t0 = Instant::now();
        let ticket = tickets.issue(t0);
        assert_eq!(ticket.len(), 64);
        assert!(ticket.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!tickets.redeem("0".repeat(64).as_str(), t0));
        assert!(tickets.redeem(&ticket, t0 + Duration::from_secs(59)));
        assert!(!tickets.redeem(&ticket, t0 + Duration::from_secs(59)), "single use");

        let late = tickets.issue(t0);
        assert!(!tickets.redeem(&late, t0 + TICKET_TTL), "expired");
        assert_ne!(tickets.issue(t0), tickets.issue(t0));
    }

    #[test]
    fn outstanding_tickets_are_bounded() {
        let tickets = Tickets::new();
        let t0 = Instant::now();
        let first = tickets.issue(t0);
        for i in 0..MAX_OUTSTANDING {
            tickets.issue(t0 + Duration::from_millis(i as u64 + 1));
        }
        assert_eq!(tickets.outstanding.lock().unwrap().len(), MAX_OUTSTANDING);
        assert!(!tickets.redeem(&first, t0), "the oldest made room");
    }
}
