//! Password guessing: after [`MAX_FAILURES`] refused passwords for one agent id from one address within
//! [`WINDOW`], that address may not try that agent id again for [`LOCKOUT`] (the phone's REGISTERs get 403
//! without their digest being checked, so a right guess in the meantime is worth nothing to a guesser).
//!
//! Keyed by address *and* agent id, so one phone with an old password behind an office's NAT locks only itself
//! out, not its colleagues; every agent id that is not in the agents file counts as one, so naming new ids does
//! not buy an address new tries. The table is bounded ([`MAX_TRACKED`]): when it is full, the entry that failed
//! longest ago and is not locked is forgotten first. Sans-IO: time comes in as `now`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Refused passwords from one address for one agent id, within [`WINDOW`], that lock it out.
pub const MAX_FAILURES: u32 = 10;
/// How far back failures count.
pub const WINDOW: Duration = Duration::from_secs(10 * 60);
/// How long a locked-out address waits before it may try that agent id again.
pub const LOCKOUT: Duration = Duration::from_secs(10 * 60);
/// At most this many (address, agent id) pairs are remembered.
pub const MAX_TRACKED: usize = 10_000;

/// Who is guessing: an address, and the agent id it claims (`None`: one not in the agents file). Made by
/// [`key`].
pub type Key = (IpAddr, Option<String>);

/// The key for a REGISTER from `source` with credentials for `agent`. An IPv6 source counts by its /64, the
/// least a single site is given, so a guesser cannot move to a fresh address of its own network for each try;
/// an IPv4-mapped IPv6 address counts as the IPv4 address it is.
pub fn key(source: IpAddr, agent: Option<String>) -> Key {
    let address = match source {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    };
    (address, agent)
}

#[derive(Debug, Default)]
pub struct Lockout {
    tracked: HashMap<Key, Strikes>,
}

#[derive(Debug, Clone, Copy)]
struct Strikes {
    failures: u32,
    first_at: Instant,
    locked_until: Option<Instant>,
}

impl Strikes {
    fn locked(&self, now: Instant) -> bool {
        self.locked_until.is_some_and(|until| now < until)
    }
}

impl Lockout {
    /// Until when `key` is locked out, if it is at `now`.
    pub fn locked_until(&self, key: &Key, now: Instant) -> Option<Instant> {
        self.tracked
            .get(key)
            .filter(|strikes| strikes.locked(now))
            .and_then(|strikes| strikes.locked_until)
    }

    /// Counts a refused password; returns `true` when this failure locks `key` out.
    pub fn failed(&mut self, key: Key, now: Instant) -> bool {
        if !self.tracked.contains_key(&key) && self.tracked.len() >= MAX_TRACKED {
            self.forget(now);
            if self.tracked.len() >= MAX_TRACKED {
                self.evict_oldest(now);
            }
        }
        let strikes = self.tracked.entry(key).or_insert(Strikes {
            failures: 0,
            first_at: now,
            locked_until: None,
        });
        if strikes.locked(now) {
            return false;
        }
        if now.saturating_duration_since(strikes.first_at) >= WINDOW
            || strikes.locked_until.is_some()
        {
            // The window, or a lockout, is over: counting starts again.
            *strikes = Strikes {
                failures: 0,
                first_at: now,
                locked_until: None,
            };
        }
        strikes.failures += 1;
        if strikes.failures >= MAX_FAILURES {
            strikes.locked_until = Some(now + LOCKOUT);
            return true;
        }
        false
    }

    /// A right password: what that address got wrong for that agent before is forgiven.
    pub fn succeeded(&mut self, key: &Key) {
        self.tracked.remove(key);
    }

    /// Forgets entries whose window and lockout are over (the registrar's expiry sweep calls this).
    pub fn forget(&mut self, now: Instant) {
        self.tracked.retain(|_, strikes| {
            strikes.locked(now) || now.saturating_duration_since(strikes.first_at) < WINDOW
        });
    }

    /// Room for one more: forgets the unlocked entry whose counting began longest ago (or, if every entry is
    /// locked, the one whose lockout ends first).
    fn evict_oldest(&mut self, now: Instant) {
        let victim = self
            .tracked
            .iter()
            .min_by_key(|(_, strikes)| {
                (strikes.locked(now), strikes.locked_until, strikes.first_at)
            })
            .map(|(key, _)| key.clone());
        if let Some(key) = victim {
            self.tracked.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn key(last: u8, agent: Option<&str>) -> Key {
        super::key(
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)),
            agent.map(str::to_owned),
        )
    }

    #[test]
    fn an_ipv6_source_counts_by_its_64_and_a_mapped_one_as_ipv4() {
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let other: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let next_net: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(super::key(one, None), super::key(other, None));
        assert_ne!(super::key(one, None), super::key(next_net, None));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(super::key(mapped, None), key(1, None));
    }

    #[test]
    fn the_tenth_failure_within_the_window_locks_out_for_the_lockout() {
        let t0 = Instant::now();
        let mut lockout = Lockout::default();
        let anna = key(1, Some("it-anna"));
        for i in 0..MAX_FAILURES - 1 {
            assert!(!lockout.failed(anna.clone(), t0 + Duration::from_secs(u64::from(i))));
            assert_eq!(lockout.locked_until(&anna, t0), None);
        }
        let tenth = t0 + Duration::from_secs(30);
        assert!(lockout.failed(anna.clone(), tenth));
        assert_eq!(lockout.locked_until(&anna, tenth), Some(tenth + LOCKOUT));
        assert!(
            lockout
                .locked_until(&anna, tenth + LOCKOUT - Duration::from_millis(1))
                .is_some()
        );
        assert_eq!(lockout.locked_until(&anna, tenth + LOCKOUT), None, "over");
        assert!(
            !lockout.failed(anna.clone(), tenth + LOCKOUT),
            "after a lockout, counting starts again"
        );
    }

    #[test]
    fn another_agent_or_address_is_not_locked_out() {
        let t0 = Instant::now();
        let mut lockout = Lockout::default();
        for _ in 0..MAX_FAILURES {
            lockout.failed(key(1, Some("it-anna")), t0);
        }
        assert!(lockout.locked_until(&key(1, Some("it-anna")), t0).is_some());
        assert_eq!(lockout.locked_until(&key(1, Some("it-bo")), t0), None);
        assert_eq!(lockout.locked_until(&key(2, Some("it-anna")), t0), None);
    }

    #[test]
    fn failures_older_than_the_window_do_not_count_and_a_right_password_forgives() {
        let t0 = Instant::now();
        let mut lockout = Lockout::default();
        let anna = key(1, Some("it-anna"));
        for _ in 0..MAX_FAILURES - 1 {
            lockout.failed(anna.clone(), t0);
        }
        assert!(!lockout.failed(anna.clone(), t0 + WINDOW), "a new window");
        for _ in 0..MAX_FAILURES - 2 {
            lockout.failed(anna.clone(), t0 + WINDOW);
        }
        lockout.succeeded(&anna);
        assert!(!lockout.failed(anna.clone(), t0 + WINDOW), "forgiven");
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_those_locked_out() {
        let t0 = Instant::now();
        let mut lockout = Lockout::default();
        let guesser = key(1, None);
        for _ in 0..MAX_FAILURES {
            lockout.failed(guesser.clone(), t0);
        }
        for n in 0..MAX_TRACKED as u32 + 50 {
            let [_, a, b, c] = n.to_be_bytes();
            let spoofed = super::key(IpAddr::V4(Ipv4Addr::new(10, a, b, c)), None);
            lockout.failed(spoofed, t0 + Duration::from_secs(1));
        }
        assert!(lockout.tracked.len() <= MAX_TRACKED);
        assert!(lockout.locked_until(&guesser, t0).is_some());
        lockout.forget(t0 + WINDOW + LOCKOUT);
        assert_eq!(lockout.tracked.len(), 0);
    }
}
