//! Failed admin logins per client address, and the lockout that follows too many.
//!
//! Only wrong tokens count: a missing or malformed header tests no guess. An address that
//! presents `max_failures` wrong tokens within `window` is refused for `lockout`, whatever it
//! presents, so that a guess that happens to be right during the lockout is refused too and
//! guessing gains nothing. Other addresses are unaffected, and a right token clears its
//! address's count.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at once. Past it, addresses not yet tracked share one entry, so that an
/// attacker spread over many addresses cannot grow the table (or escape counting) without bound.
pub(crate) const MAX_TRACKED: usize = 4096;
/// The shared entry's key; no client has it.
const OVERFLOW: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policy {
    pub max_failures: u32,
    pub window: Duration,
    pub lockout: Duration,
}

#[derive(Debug)]
struct Entry {
    failures: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
}

impl Entry {
    fn stale(&self, now: Instant, policy: &Policy) -> bool {
        self.locked_until.is_none_or(|until| until <= now) && now.duration_since(self.window_start) >= policy.window
    }
}

/// What one more wrong token did to its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Counted; `failures` so far in this window.
    Counted { failures: u32 },
    /// This one reached `max_failures`: the address is locked out from now on.
    LockedOut { failures: u32 },
}

pub(crate) struct Lockout {
    policy: Policy,
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

impl Lockout {
    pub(crate) fn new(policy: Policy) -> Self {
        Lockout { policy, entries: Mutex::new(HashMap::new()) }
    }

    pub(crate) fn policy(&self) -> &Policy {
        &self.policy
    }

    /// How long `client` stays locked out, if it is.
    pub(crate) fn locked(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = key(client);
        let entry = entries.get(&key).or_else(|| entries.get(&OVERFLOW).filter(|_| entries.len() >= MAX_TRACKED))?;
        entry.locked_until.and_then(|until| until.checked_duration_since(now)).filter(|left| !left.is_zero())
    }

    pub(crate) fn fail(&self, client: IpAddr, now: Instant) -> Failure {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut key = key(client);
        if !entries.contains_key(&key) && entries.len() >= MAX_TRACKED {
            entries.retain(|_, e| !e.stale(now, &self.policy));
            if entries.len() >= MAX_TRACKED {
                key = OVERFLOW;
            }
        }
        let entry = entries.entry(key).or_insert(Entry { failures: 0, window_start: now, locked_until: None });
        if entry.stale(now, &self.policy) {
            *entry = Entry { failures: 0, window_start: now, locked_until: None };
        }
        entry.failures = entry.failures.saturating_add(1);
        if entry.failures >= self.policy.max_failures && entry.locked_until.is_none_or(|until| until <= now) {
            entry.locked_until = Some(now + self.policy.lockout);
            // The next window starts when the lockout ends.
            entry.window_start = now + self.policy.lockout;
            let failures = entry.failures;
            entry.failures = 0;
            return Failure::LockedOut { failures };
        }
        Failure::Counted { failures: entry.failures }
    }

    /// A right token: the address starts over.
    pub(crate) fn succeed(&self, client: IpAddr) {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.remove(&key(client));
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or_default()
    }
}

/// The unit an address is counted under: IPv4 addresses alone (also when mapped into IPv6),
/// IPv6 addresses by /64, the smallest block one client usually gets (as the listeners'
/// per-address connection cap does).
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy =
        Policy { max_failures: 3, window: Duration::from_secs(60), lockout: Duration::from_secs(300) };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn locks_out_after_max_failures_within_the_window_then_lets_go() {
        let lockout = Lockout::new(POLICY);
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        let t0 = Instant::now();
        assert_eq!(lockout.fail(a, t0), Failure::Counted { failures: 1 });
        assert_eq!(lockout.fail(a, t0), Failure::Counted { failures: 2 });
        assert_eq!(lockout.locked(a, t0), None);
        assert_eq!(lockout.fail(a, t0 + Duration::from_secs(10)), Failure::LockedOut { failures: 3 });
        assert_eq!(lockout.locked(a, t0 + Duration::from_secs(10)), Some(Duration::from_secs(300)));
        assert_eq!(lockout.locked(a, t0 + Duration::from_secs(110)), Some(Duration::from_secs(200)));
        assert_eq!(lockout.locked(b, t0 + Duration::from_secs(10)), None, "other addresses are unaffected");
        assert_eq!(lockout.locked(a, t0 + Duration::from_secs(310)), None);
        // Free again, with a fresh count.
        assert_eq!(lockout.fail(a, t0 + Duration::from_secs(311)), Failure::Counted { failures: 1 });
    }

    #[test]
    fn failures_spread_wider_than_the_window_do_not_add_up() {
        let lockout = Lockout::new(POLICY);
        let a = ip("192.0.2.1");
        let t0 = Instant::now();
        for minute in 0..10 {
            let t = t0 + Duration::from_secs(61 * minute);
            lockout.fail(a, t);
            assert!(matches!(lockout.fail(a, t), Failure::Counted { failures: 2 }));
        }
    }

    #[test]
    fn a_right_token_clears_the_count() {
        let lockout = Lockout::new(POLICY);
        let a = ip("192.0.2.1");
        let t0 = Instant::now();
        lockout.fail(a, t0);
        lockout.fail(a, t0);
        lockout.succeed(a);
        assert_eq!(lockout.fail(a, t0), Failure::Counted { failures: 1 });
    }

    #[test]
    fn ipv6_counts_by_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(key(ip("2001:db8:1:2:aaaa::1")), key(ip("2001:db8:1:2:bbbb::2")));
        assert_ne!(key(ip("2001:db8:1:2::1")), key(ip("2001:db8:1:3::1")));
        assert_eq!(key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn the_table_is_bounded_and_overflow_is_still_counted() {
        let lockout = Lockout::new(POLICY);
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED as u32 {
            lockout.fail(IpAddr::V4(i.into()), t0);
        }
        assert_eq!(lockout.tracked(), MAX_TRACKED);
        let newcomer = ip("2001:db8::1");
        for _ in 0..POLICY.max_failures {
            lockout.fail(newcomer, t0);
        }
        assert_eq!(lockout.tracked(), MAX_TRACKED + 1, "one shared entry, not one per newcomer");
        assert!(lockout.locked(newcomer, t0).is_some(), "newcomers share the overflow entry's lockout");
        // Once the old entries' window has passed they make room again.
        let later = t0 + POLICY.window;
        lockout.fail(ip("2001:db8:9::1"), later);
        assert!(lockout.tracked() <= 2);
    }
}
