//! The brake on token guessing: failed authentications (HTTP bearer tokens and WebSocket
//! `identify`) are counted per source address. Past a few, each refusal is answered more
//! slowly; past the limit, the address is refused outright for a while, valid token or not
//! (otherwise a guesser would simply be told when it guessed right).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures an address may have before its refusals are slowed down.
const FREE_FAILURES: u32 = 3;
/// Added to the answer of each failure past [`FREE_FAILURES`].
const DELAY_STEP: Duration = Duration::from_millis(100);
/// The slowest a refusal is answered.
const MAX_DELAY: Duration = Duration::from_secs(1);
/// Addresses tracked before expired entries are swept.
const SWEEP_AT: usize = 10_000;

/// The throttle's settings (`serve --auth-max-failures`, `--auth-lockout-ms`).
#[derive(Debug, Clone, Copy)]
pub struct AuthLimits {
    /// Failures within [`AuthLimits::lockout`] after which the address is locked out; 0 turns
    /// the throttle off.
    pub max_failures: u32,
    /// How long failures are remembered, and how long a lockout lasts.
    pub lockout: Duration,
}

/// Failed authentications by source address.
pub struct AuthThrottle {
    limits: AuthLimits,
    addresses: Mutex<HashMap<IpAddr, Failures>>,
}

struct Failures {
    count: u32,
    /// The window of counted failures ends here (a lockout, once reached, ends here too).
    until: Instant,
}

impl AuthThrottle {
    pub fn new(limits: AuthLimits) -> AuthThrottle {
        AuthThrottle {
            limits,
            addresses: Mutex::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> AuthLimits {
        self.limits
    }

    /// `Err(retry_after)` when `ip` is locked out.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        self.check_at(ip, Instant::now())
    }

    /// Counts a failure of `ip`; returns how long to wait before answering it.
    pub fn failed(&self, ip: IpAddr) -> Duration {
        self.failed_at(ip, Instant::now())
    }

    fn check_at(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.limits.max_failures == 0 {
            return Ok(());
        }
        let addresses = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
        match addresses.get(&key(ip)) {
            Some(failures)
                if failures.count >= self.limits.max_failures && failures.until > now =>
            {
                Err(failures.until - now)
            }
            _ => Ok(()),
        }
    }

    fn failed_at(&self, ip: IpAddr, now: Instant) -> Duration {
        if self.limits.max_failures == 0 {
            return Duration::ZERO;
        }
        let mut addresses = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
        if addresses.len() >= SWEEP_AT {
            addresses.retain(|_, failures| failures.until > now);
        }
        let failures = addresses.entry(key(ip)).or_insert(Failures {
            count: 0,
            until: now + self.limits.lockout,
        });
        if failures.until <= now {
            *failures = Failures {
                count: 0,
                until: now + self.limits.lockout,
            };
        }
        failures.count += 1;
        if failures.count == self.limits.max_failures {
            // The lockout runs its full length from the failure that reached the limit.
            failures.until = now + self.limits.lockout;
            tracing::warn!(%ip, failures = failures.count, lockout_ms = self.limits.lockout.as_millis() as u64,
                "too many failed authentications; refusing this address for a while");
        }
        let slowed = failures.count.saturating_sub(FREE_FAILURES);
        (DELAY_STEP * slowed).min(MAX_DELAY)
    }
}

/// Addresses are counted as a client usually holds them: IPv4 one by one, IPv6 by /64 (one
/// host commonly has a whole /64 to pick from).
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(max_failures: u32) -> AuthThrottle {
        AuthThrottle::new(AuthLimits {
            max_failures,
            lockout: Duration::from_secs(60),
        })
    }

    #[test]
    fn failures_slow_down_then_lock_out_then_expire() {
        let throttle = throttle(6);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let start = Instant::now();
        let delays: Vec<Duration> = (0..5).map(|_| throttle.failed_at(ip, start)).collect();
        assert_eq!(delays[..3], [Duration::ZERO; 3]);
        assert_eq!(delays[3], DELAY_STEP);
        assert_eq!(delays[4], DELAY_STEP * 2);
        assert!(throttle.check_at(ip, start).is_ok(), "5 of 6 failures");
        let later = start + Duration::from_secs(10);
        throttle.failed_at(ip, later);
        let retry_after = throttle.check_at(ip, later).unwrap_err();
        assert_eq!(
            retry_after,
            Duration::from_secs(60),
            "from the failure that locked"
        );
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(
            throttle.check_at(other, later).is_ok(),
            "other addresses are not affected"
        );
        let after = later + Duration::from_secs(61);
        assert!(throttle.check_at(ip, after).is_ok(), "the lockout ends");
        assert_eq!(
            throttle.failed_at(ip, after),
            Duration::ZERO,
            "and the count starts again"
        );
    }

    #[test]
    fn zero_turns_it_off() {
        let throttle = throttle(0);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..100 {
            assert_eq!(throttle.failed(ip), Duration::ZERO);
        }
        assert!(throttle.check(ip).is_ok());
    }

    #[test]
    fn ipv6_is_counted_by_prefix() {
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::ffff:1".parse().unwrap();
        assert_eq!(key(a), key(b));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }
}
