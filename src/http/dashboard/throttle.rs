//! Slows down whoever guesses the admin token: five wrong tokens from one peer address within
//! a minute, and that address is refused (429 with `Retry-After`) for the rest of the minute.
//! One limiter for the dashboard's sign-in form and the JSON admin API's bearer tokens, so a
//! guesser gains nothing by switching between them.
//!
//! The address is the TCP peer, never `X-Forwarded-For` (a header anyone can write would let a
//! guesser pick a fresh address per try). IPv6 peers are counted by their /64, the block one
//! host usually holds. Behind a reverse proxy every client shares the proxy's address, so a
//! guesser there slows the operator down too: for a minute, and only the token forms.
//!
//! Memory is bounded ([`MAX_ADDRESSES`]): the windows that have ended are dropped first, then
//! the oldest.
//!
//! May depend on: std only. Time is passed in (unix seconds) so tests can move it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Wrong tokens from one address within [`WINDOW_SECS`] before it is slowed down.
pub const MAX_FAILURES: u32 = 5;
/// The window, in seconds, that starts with an address's first wrong token.
pub const WINDOW_SECS: i64 = 60;
/// Addresses remembered at most.
pub const MAX_ADDRESSES: usize = 4096;

/// Failures per peer address (IPv6 by /64). Cheap to share: one per server.
#[derive(Debug, Default)]
pub struct Throttle {
    windows: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: i64,
    failures: u32,
}

/// An address that has guessed too often: how many seconds it must wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slowed {
    pub retry_after_secs: u64,
}

/// IPv4 as is (also when seen through an IPv6 socket), IPv6 by its /64.
fn key(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

impl Throttle {
    pub fn new() -> Throttle {
        Throttle::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Window>> {
        // A panic elsewhere while holding the lock leaves counts, not broken invariants.
        self.windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `peer` may try a token now.
    pub fn check(&self, peer: IpAddr, now: i64) -> Result<(), Slowed> {
        let map = self.lock();
        match map.get(&key(peer)) {
            Some(w) if w.failures >= MAX_FAILURES && now < w.started + WINDOW_SECS => Err(Slowed {
                retry_after_secs: (w.started + WINDOW_SECS - now).max(1).unsigned_abs(),
            }),
            _ => Ok(()),
        }
    }

    /// Records a wrong token from `peer`.
    pub fn failed(&self, peer: IpAddr, now: i64) {
        let mut map = self.lock();
        let k = key(peer);
        if !map.contains_key(&k) && map.len() >= MAX_ADDRESSES {
            map.retain(|_, w| now < w.started + WINDOW_SECS);
            if map.len() >= MAX_ADDRESSES {
                if let Some(oldest) = map.iter().min_by_key(|(_, w)| w.started).map(|(a, _)| *a) {
                    map.remove(&oldest);
                }
            }
        }
        let w = map.entry(k).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now >= w.started + WINDOW_SECS {
            *w = Window {
                started: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }

    /// Addresses remembered now (for tests).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn five_wrong_tokens_in_a_minute_slow_the_address_for_the_rest_of_it() {
        let t = Throttle::new();
        let a = ip("203.0.113.7");
        for i in 0..4 {
            t.failed(a, 1000 + i);
            assert_eq!(t.check(a, 1000 + i), Ok(()), "after {} failures", i + 1);
        }
        t.failed(a, 1010);
        assert_eq!(
            t.check(a, 1010),
            Err(Slowed {
                retry_after_secs: 50
            })
        );
        assert_eq!(
            t.check(a, 1059),
            Err(Slowed {
                retry_after_secs: 1
            })
        );
        // The minute is over: the right token may be tried again.
        assert_eq!(t.check(a, 1060), Ok(()));
        // And a new wrong token starts a new window rather than slowing at once.
        t.failed(a, 1061);
        assert_eq!(t.check(a, 1061), Ok(()));
    }

    #[test]
    fn failures_spread_over_more_than_a_minute_never_slow_anyone() {
        let t = Throttle::new();
        let a = ip("198.51.100.1");
        for i in 0..20 {
            t.failed(a, i * 20);
            assert_eq!(t.check(a, i * 20), Ok(()), "failure {i}");
        }
    }

    #[test]
    fn other_addresses_are_not_slowed_but_one_ipv6_block_counts_as_one() {
        let t = Throttle::new();
        for _ in 0..5 {
            t.failed(ip("2001:db8:1:2::1"), 0);
        }
        assert!(t.check(ip("2001:db8:1:2::ffff"), 1).is_err(), "same /64");
        assert_eq!(t.check(ip("2001:db8:1:3::1"), 1), Ok(()));
        assert_eq!(t.check(ip("203.0.113.9"), 1), Ok(()));
        for _ in 0..5 {
            t.failed(ip("::ffff:192.0.2.1"), 0);
        }
        assert!(
            t.check(ip("192.0.2.1"), 1).is_err(),
            "v4 through a v6 socket"
        );
    }

    #[test]
    fn memory_stays_bounded_under_many_addresses() {
        let t = Throttle::new();
        for i in 0..(MAX_ADDRESSES as u32 + 500) {
            t.failed(IpAddr::V4(std::net::Ipv4Addr::from(i)), i64::from(i / 100));
        }
        assert!(t.len() <= MAX_ADDRESSES, "{}", t.len());
    }
}
