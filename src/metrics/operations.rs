//! Long jobs: snapshot creation, snapshot recovery and shard transfers — how many run,
//! how many finished or failed, the bytes they moved and how long they took.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::histogram::{Histogram, HistogramSnapshot, JOB_BUCKETS};

/// Which kind of job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    SnapshotCreate,
    SnapshotRecover,
    ShardTransfer,
}

impl OperationKind {
    /// The kind of a snapshot task by its task kind (`create_snapshot`,
    /// `recover_shard_snapshot`, ...); `None` for deletions and other quick jobs.
    pub fn of_task(kind: &str) -> Option<OperationKind> {
        if kind.starts_with("create") {
            Some(OperationKind::SnapshotCreate)
        } else if kind.starts_with("recover") {
            Some(OperationKind::SnapshotRecover)
        } else {
            None
        }
    }
}

/// Counters of one kind of job.
pub struct OperationStats {
    running: AtomicU64,
    finished: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
    duration: Histogram,
}

/// A copy of one kind's counters.
#[derive(Debug, Clone)]
pub struct OperationSnapshot {
    pub running: u64,
    pub finished: u64,
    pub failed: u64,
    pub bytes: u64,
    pub duration: HistogramSnapshot,
}

impl Default for OperationStats {
    fn default() -> Self {
        OperationStats {
            running: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            duration: Histogram::new(JOB_BUCKETS),
        }
    }
}

impl OperationStats {
    /// A job started; pair with [`Self::ended`].
    pub fn started(&self) {
        self.running.fetch_add(1, Ordering::Relaxed);
    }

    /// A job started by [`Self::started`] ended after `took`, having moved `bytes`.
    pub fn ended(&self, succeeded: bool, bytes: u64, took: Duration) {
        // Never below zero, even if a caller ends a job twice.
        let _ = self
            .running
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        if succeeded {
            self.finished.fetch_add(1, Ordering::Relaxed);
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.duration.observe(took);
    }

    /// Bytes moved by a job still running (counted as they go).
    pub fn add_bytes(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> OperationSnapshot {
        OperationSnapshot {
            running: self.running.load(Ordering::Relaxed),
            finished: self.finished.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            duration: self.duration.snapshot(),
        }
    }
}

/// Every kind of job.
#[derive(Default)]
pub struct Operations {
    pub snapshot_create: OperationStats,
    pub snapshot_recover: OperationStats,
    pub shard_transfer: OperationStats,
}

impl Operations {
    /// The counters of `kind`.
    pub fn of(&self, kind: OperationKind) -> &OperationStats {
        match kind {
            OperationKind::SnapshotCreate => &self.snapshot_create,
            OperationKind::SnapshotRecover => &self.snapshot_recover,
            OperationKind::ShardTransfer => &self.shard_transfer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_counted() {
        let ops = Operations::default();
        let create = ops.of(OperationKind::of_task("create_snapshot").unwrap());
        create.started();
        assert_eq!(create.snapshot().running, 1);
        create.ended(true, 100, Duration::from_secs(1));
        create.started();
        create.ended(false, 5, Duration::from_secs(2));
        let s = create.snapshot();
        assert_eq!((s.running, s.finished, s.failed, s.bytes), (0, 1, 1, 105));
        assert_eq!(s.duration.count, 2);
        assert_eq!(OperationKind::of_task("delete_snapshot"), None);
        assert_eq!(
            OperationKind::of_task("recover_shard_snapshot"),
            Some(OperationKind::SnapshotRecover)
        );
    }
}
