//! A cumulative histogram with fixed bucket bounds, in atomics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket bounds (seconds) for API response durations.
pub const RESPONSE_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0, 5.0];

/// Bucket bounds (seconds) for long jobs: snapshots, recoveries, transfers.
pub const JOB_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0];

/// Observations counted per bucket (each counts in the first bucket whose bound it does
/// not exceed; the exposition makes the counts cumulative), with their sum in microseconds.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// Observations above the last bound (the `+Inf` bucket only).
    overflow: AtomicU64,
    sum_micros: AtomicU64,
}

/// A consistent-enough copy of a histogram for printing.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound, cumulative count)`, without `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    /// Count of every observation (the `+Inf` bucket).
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    /// An empty histogram over `bounds` (ascending).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            overflow: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        match self.bounds.iter().position(|bound| seconds <= *bound) {
            Some(i) => self.counts[i].fetch_add(1, Ordering::Relaxed),
            None => self.overflow.fetch_add(1, Ordering::Relaxed),
        };
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Cumulative bucket counts as Prometheus wants them.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(&self.counts)
            .map(|(bound, count)| {
                running += count.load(Ordering::Relaxed);
                (*bound, running)
            })
            .collect();
        HistogramSnapshot {
            buckets,
            count: running + self.overflow.load(Ordering::Relaxed),
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        let h = Histogram::new(&[0.01, 1.0]);
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(500));
        h.observe(Duration::from_secs(3));
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(0.01, 1), (1.0, 2)]);
        assert_eq!(s.count, 3);
        assert!((s.sum_seconds - 3.505).abs() < 1e-9);
    }
}
