//! Response statistics of one API (REST or gRPC), by method, endpoint and status.
//!
//! The map is read-locked on the hot path; a new key takes the write lock once.
//! Endpoints are route templates (`/collections/{name}/points`), never raw paths, so
//! the number of keys stays bounded by the routes times the statuses.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;

use super::histogram::{Histogram, HistogramSnapshot, RESPONSE_BUCKETS};

/// Most distinct keys kept; responses of further keys are folded into the overflow key.
const MAX_KEYS: usize = 4096;

/// Which responses a statistic counts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResponseKey {
    /// HTTP method (empty for gRPC).
    pub method: String,
    /// Route template, or the gRPC method path.
    pub endpoint: String,
    /// HTTP status, or the gRPC status code.
    pub status: u16,
}

/// The statistic of one key.
pub struct ResponseStat {
    count: AtomicU64,
    total_micros: AtomicU64,
    min_micros: AtomicU64,
    max_micros: AtomicU64,
    last_responded_ms: AtomicU64,
    histogram: Histogram,
}

/// A copy of one statistic.
#[derive(Debug, Clone)]
pub struct ResponseSnapshot {
    pub count: u64,
    pub total_micros: u64,
    pub min_micros: u64,
    pub max_micros: u64,
    /// Unix milliseconds of the latest response.
    pub last_responded_ms: u64,
    pub histogram: HistogramSnapshot,
}

impl ResponseSnapshot {
    /// Mean duration in microseconds (0 with no responses).
    pub fn avg_micros(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.total_micros as f64 / self.count as f64
        }
    }
}

impl Default for ResponseStat {
    fn default() -> Self {
        ResponseStat {
            count: AtomicU64::new(0),
            total_micros: AtomicU64::new(0),
            min_micros: AtomicU64::new(u64::MAX),
            max_micros: AtomicU64::new(0),
            last_responded_ms: AtomicU64::new(0),
            histogram: Histogram::new(RESPONSE_BUCKETS),
        }
    }
}

impl ResponseStat {
    fn record(&self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.total_micros.fetch_add(micros, Ordering::Relaxed);
        self.min_micros.fetch_min(micros, Ordering::Relaxed);
        self.max_micros.fetch_max(micros, Ordering::Relaxed);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.last_responded_ms.store(now_ms, Ordering::Relaxed);
        self.histogram.observe(took);
    }

    fn snapshot(&self) -> ResponseSnapshot {
        let count = self.count.load(Ordering::Relaxed);
        let min = self.min_micros.load(Ordering::Relaxed);
        ResponseSnapshot {
            count,
            total_micros: self.total_micros.load(Ordering::Relaxed),
            min_micros: if count == 0 { 0 } else { min },
            max_micros: self.max_micros.load(Ordering::Relaxed),
            last_responded_ms: self.last_responded_ms.load(Ordering::Relaxed),
            histogram: self.histogram.snapshot(),
        }
    }
}

/// Statistics of one API.
#[derive(Default)]
pub struct ResponseStats {
    stats: RwLock<BTreeMap<ResponseKey, Arc<ResponseStat>>>,
}

impl ResponseStats {
    /// Records one response.
    pub fn record(&self, key: ResponseKey, took: Duration) {
        if let Some(stat) = self.stats.read().get(&key) {
            stat.record(took);
            return;
        }
        let stat = {
            let mut stats = self.stats.write();
            let key = if stats.len() >= MAX_KEYS && !stats.contains_key(&key) {
                ResponseKey {
                    method: key.method,
                    endpoint: "other".into(),
                    status: key.status,
                }
            } else {
                key
            };
            stats.entry(key).or_default().clone()
        };
        stat.record(took);
    }

    /// Every key with a copy of its statistic, sorted by key.
    pub fn snapshot(&self) -> Vec<(ResponseKey, ResponseSnapshot)> {
        self.stats
            .read()
            .iter()
            .map(|(key, stat)| (key.clone(), stat.snapshot()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(status: u16) -> ResponseKey {
        ResponseKey {
            method: "GET".into(),
            endpoint: "/collections".into(),
            status,
        }
    }

    #[test]
    fn responses_are_counted_by_key() {
        let stats = ResponseStats::default();
        stats.record(key(200), Duration::from_micros(10));
        stats.record(key(200), Duration::from_micros(30));
        stats.record(key(404), Duration::from_micros(5));
        let all = stats.snapshot();
        assert_eq!(all.len(), 2);
        let (k, ok) = &all[0];
        assert_eq!(k.status, 200);
        assert_eq!((ok.count, ok.min_micros, ok.max_micros), (2, 10, 30));
        assert_eq!(ok.avg_micros(), 20.0);
        assert_eq!(all[1].1.count, 1);
    }
}
