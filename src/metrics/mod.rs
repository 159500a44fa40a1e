//! Counters, gauges and histograms of this process, kept in atomics so that recording
//! never waits and reading never blocks the work being measured.
//!
//! Low in the tree on purpose: the API layer records responses into [`Metrics::rest`]
//! and [`Metrics::grpc`], the node records snapshot jobs and shard transfers into
//! [`Metrics::operations`], and `GET /metrics` / `GET /telemetry` read them all.
//! `exposition.rs` writes the Prometheus text format.

pub mod exposition;
pub mod histogram;
pub mod operations;
pub mod responses;

use std::time::{Instant, SystemTime};

pub use histogram::Histogram;
pub use operations::{OperationKind, OperationStats, Operations};
pub use responses::{ResponseKey, ResponseStat, ResponseStats};

/// Every metric this process keeps.
pub struct Metrics {
    /// REST responses by method, route template and status.
    pub rest: ResponseStats,
    /// gRPC responses by method path.
    pub grpc: ResponseStats,
    /// Snapshot creations and recoveries, shard transfers.
    pub operations: Operations,
    /// When the process started (for `app.startup`).
    pub started_at: SystemTime,
    /// Monotonic twin of [`Self::started_at`].
    pub started: Instant,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            rest: ResponseStats::default(),
            grpc: ResponseStats::default(),
            operations: Operations::default(),
            started_at: SystemTime::now(),
            started: Instant::now(),
        }
    }
}
