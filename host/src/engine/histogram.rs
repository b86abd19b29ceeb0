//! A histogram the engine and the writer record into without a lock: one relaxed atomic add
//! per bucket hit, the count and the sum. `/metrics` reads a snapshot and hands it to the
//! `prometheus-client` encoder; the crate's own `Histogram` takes a lock per observation, which
//! the engine thread must not do for every assignment.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds, in seconds, for waits and runs: 1 ms to 1 h.
pub const WAIT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// Upper bounds, in seconds, for work done in the hub (a policy decision, a commit): 10 µs to
/// 2.5 s.
pub const WORK_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    /// In nanoseconds, so that it can be an integer atomic.
    sum_nanos: AtomicU64,
}

/// What a scrape reads: cumulative buckets as Prometheus wants them.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub sum: f64,
    pub count: u64,
    /// `(upper bound, observations at or below it)`, ending with `+Inf`.
    pub buckets: Vec<(f64, u64)>,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let index = self.bounds.partition_point(|&bound| bound < seconds);
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(
            u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Records a span measured in the hub's millisecond clock.
    pub fn observe_ms(&self, ms: u64) {
        self.observe(Duration::from_millis(ms));
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let buckets = self
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.buckets.iter())
            .map(|(bound, n)| {
                total += n.load(Ordering::Relaxed);
                (bound, total)
            })
            .collect();
        HistogramSnapshot {
            sum: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            // The `+Inf` bucket, so that count and buckets agree even while observations land.
            count: total,
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_cumulative_buckets() {
        let h = Histogram::new(&[0.01, 0.1, 1.0]);
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(10)); // on the bound: `le` is inclusive
        h.observe(Duration::from_millis(500));
        h.observe(Duration::from_secs(7));
        let s = h.snapshot();
        assert_eq!(
            s.buckets,
            vec![(0.01, 2), (0.1, 2), (1.0, 3), (f64::INFINITY, 4)]
        );
        assert_eq!(s.count, 4);
        assert!((s.sum - 7.515).abs() < 1e-9, "{}", s.sum);
    }
}
