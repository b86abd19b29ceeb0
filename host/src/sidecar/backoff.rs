//! Reconnect delays: exponential from `min` to `max`, with jitter.
//!
//! The jitter keeps a fleet of sidecars that lost the hub at the same moment (a hub restart)
//! from all knocking again at the same moments. The delay grows with every failed attempt,
//! connect or identify alike (a refused token must not turn into a tight retry loop), and starts
//! again from `min` only after an identify succeeded.

use rand::Rng;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            failures: 0,
        }
    }

    /// The delay before the next attempt: a random point in the upper half of
    /// `min * 2^failures` (capped at `max`), and never under `min`.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .min
            .saturating_mul(2u32.saturating_pow(self.failures.min(31)))
            .min(self.max);
        self.failures = self.failures.saturating_add(1);
        let floor = (ceiling / 2).max(self.min);
        if floor >= ceiling {
            return ceiling;
        }
        rand::rng().random_range(floor..=ceiling)
    }

    /// An identify succeeded: the next delay starts from `min` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_within_bounds_and_resets() {
        let min = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        let mut backoff = Backoff::new(min, max);
        let delays: Vec<Duration> = (0..12).map(|_| backoff.next_delay()).collect();
        assert_eq!(delays[0], min);
        for (i, delay) in delays.iter().enumerate() {
            assert!(*delay >= min && *delay <= max, "{i}: {delay:?}");
            let ceiling = (min * 2u32.pow(i as u32)).min(max);
            assert!(
                *delay >= ceiling / 2 && *delay <= ceiling,
                "{i}: {delay:?} vs {ceiling:?}"
            );
        }
        assert!(delays[11] >= Duration::from_secs(30));
        backoff.reset();
        assert_eq!(backoff.next_delay(), min);
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
            backoff.failures = 5;
            seen.insert(backoff.next_delay());
        }
        assert!(seen.len() > 1, "{seen:?}");
    }
}
