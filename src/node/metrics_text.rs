//! `GET /metrics`: the Prometheus text document, with Qdrant's metric names where shoal
//! has the fact and `shoal_*` names for its own (snapshot bytes, durations and failures,
//! recoveries, shard transfers).
//!
//! Like `telemetry.rs`, it reads only the published consensus state, the atomics of
//! [`crate::metrics`] and try-locked point counts, so a scrape never waits on a busy
//! collection.

use crate::consensus::state::{ClusterState, ReplicaState};
use crate::metrics::exposition::{Exposition, Type};
use crate::metrics::ResponseStats;
use crate::node::telemetry::{anonymize, APP_NAME};
use crate::node::Node;
use crate::types::QDRANT_API_VERSION;

impl Node {
    /// `GET /metrics`: the Prometheus text document. Per-collection samples only when
    /// `per_collection` is asked and `per_collection_metrics_enabled` allows it.
    pub fn metrics_text(&self, per_collection: bool, anonymize_it: bool) -> String {
        let state = self.consensus.state();
        let points = self.point_counts.read(self, &state);
        let mut e = Exposition::with_prefix("");
        e.family("app_info", Type::Gauge, "information about the application")
            .sample(
                "app_info",
                &[("name", APP_NAME), ("version", QDRANT_API_VERSION)],
                1.0,
            );
        e.family(
            "app_status_recovery_mode",
            Type::Gauge,
            "whether the application is in recovery mode",
        )
        .sample("app_status_recovery_mode", &[], 0.0);
        e.family("collections_total", Type::Gauge, "number of collections")
            .sample("collections_total", &[], state.collections.len() as f64);
        let vectors_of = |name: &str| {
            let per_point = state
                .collections
                .get(name)
                .map_or(0, |c| c.config.params.vectors.by_name().len());
            points.get(name).copied().unwrap_or(0) * per_point
        };
        let vectors: usize = points.keys().map(|name| vectors_of(name)).sum();
        e.family(
            "collections_vector_total",
            Type::Gauge,
            "total number of vectors in the collections held here",
        )
        .sample("collections_vector_total", &[], vectors as f64);
        if per_collection && self.settings.per_collection_metrics() {
            e.family(
                "collection_points",
                Type::Gauge,
                "number of points of the collection held here",
            );
            for (name, count) in &points {
                let id = if anonymize_it {
                    anonymize(name)
                } else {
                    name.clone()
                };
                e.sample("collection_points", &[("id", &id)], *count as f64);
            }
            e.family(
                "collection_vectors",
                Type::Gauge,
                "number of vectors of the collection held here",
            );
            for name in points.keys() {
                let id = if anonymize_it {
                    anonymize(name)
                } else {
                    name.clone()
                };
                e.sample(
                    "collection_vectors",
                    &[("id", &id)],
                    vectors_of(name) as f64,
                );
            }
        }
        self.cluster_metrics(&mut e, &state);
        responses_metrics(&mut e, "rest", &self.metrics.rest, true);
        responses_metrics(&mut e, "grpc", &self.metrics.grpc, false);
        self.operation_metrics(&mut e);
        e.finish()
    }

    fn cluster_metrics(&self, e: &mut Exposition, state: &ClusterState) {
        let enabled = self.membership.is_some();
        e.family(
            "cluster_enabled",
            Type::Gauge,
            "whether cluster support is enabled",
        )
        .sample("cluster_enabled", &[], f64::from(u8::from(enabled)));
        if !enabled {
            return;
        }
        let info = self.consensus.raft_info();
        let me = self.consensus.peer_id();
        let peers = self.consensus.peers().len();
        let dead = state
            .collections
            .values()
            .flat_map(|c| c.shards.values())
            .flat_map(|replicas| replicas.values())
            .filter(|s| **s == ReplicaState::Dead)
            .count();
        for (name, kind, help, value) in [
            (
                "cluster_peers_total",
                Type::Gauge,
                "total number of cluster peers",
                peers as f64,
            ),
            (
                "cluster_term",
                Type::Gauge,
                "current cluster term",
                info.term as f64,
            ),
            (
                "cluster_commit",
                Type::Gauge,
                "index of last committed (finalized) operation",
                info.commit as f64,
            ),
            (
                "cluster_pending_operations_total",
                Type::Gauge,
                "total number of pending operations for this peer",
                info.pending_proposals as f64,
            ),
            (
                "cluster_voter",
                Type::Gauge,
                "whether this peer is a voter",
                f64::from(u8::from(info.voters.contains(&me))),
            ),
            (
                "shoal_dead_replicas",
                Type::Gauge,
                "replicas in the Dead state, cluster-wide",
                dead as f64,
            ),
        ] {
            e.family(name, kind, help).sample(name, &[], value);
        }
    }

    fn operation_metrics(&self, e: &mut Exposition) {
        let ops = &self.metrics.operations;
        let create = ops.snapshot_create.snapshot();
        let recover = ops.snapshot_recover.snapshot();
        let transfer = ops.shard_transfer.snapshot();
        e.family(
            "snapshot_creation_running",
            Type::Gauge,
            "snapshot creations running",
        )
        .sample("snapshot_creation_running", &[], create.running as f64);
        e.family(
            "snapshot_recovery_running",
            Type::Gauge,
            "snapshot recoveries running",
        )
        .sample("snapshot_recovery_running", &[], recover.running as f64);
        e.family("snapshot_created_total", Type::Counter, "snapshots created")
            .sample("snapshot_created_total", &[], create.finished as f64);
        let both = [("create", &create), ("recover", &recover)];
        e.family(
            "shoal_snapshot_bytes_total",
            Type::Counter,
            "bytes written by snapshot creations and read by recoveries that ended",
        );
        for (op, s) in both {
            e.sample(
                "shoal_snapshot_bytes_total",
                &[("operation", op)],
                s.bytes as f64,
            );
        }
        e.family(
            "shoal_snapshot_failures_total",
            Type::Counter,
            "snapshot creations and recoveries that failed",
        );
        for (op, s) in both {
            e.sample(
                "shoal_snapshot_failures_total",
                &[("operation", op)],
                s.failed as f64,
            );
        }
        e.family(
            "shoal_snapshot_duration_seconds",
            Type::Histogram,
            "duration of snapshot creations and recoveries",
        );
        for (op, s) in both {
            e.histogram(
                "shoal_snapshot_duration_seconds",
                &[("operation", op)],
                &s.duration,
            );
        }
        for (name, kind, help, value) in [
            (
                "shoal_recoveries_running",
                Type::Gauge,
                "snapshot recoveries running",
                recover.running,
            ),
            (
                "shoal_recoveries_finished_total",
                Type::Counter,
                "snapshot recoveries that succeeded",
                recover.finished,
            ),
            (
                "shoal_recoveries_failed_total",
                Type::Counter,
                "snapshot recoveries that failed",
                recover.failed,
            ),
            (
                "shoal_shard_transfers_running",
                Type::Gauge,
                "shard transfers this peer is the source of, running",
                transfer.running,
            ),
            (
                "shoal_shard_transfers_finished_total",
                Type::Counter,
                "shard transfers from this peer that finished",
                transfer.finished,
            ),
            (
                "shoal_shard_transfers_failed_total",
                Type::Counter,
                "shard transfers from this peer that failed",
                transfer.failed,
            ),
            (
                "shoal_shard_transfer_bytes_total",
                Type::Counter,
                "bytes sent by shard transfers from this peer",
                transfer.bytes,
            ),
        ] {
            e.family(name, kind, help).sample(name, &[], value as f64);
        }
        e.family(
            "shoal_shard_transfer_duration_seconds",
            Type::Histogram,
            "duration of shard transfers from this peer",
        )
        .histogram(
            "shoal_shard_transfer_duration_seconds",
            &[],
            &transfer.duration,
        );
    }
}

/// `{api}_responses_*` families. REST samples are labelled `method`, `endpoint`, `status`;
/// gRPC ones `endpoint` and `status` (the gRPC code).
fn responses_metrics(e: &mut Exposition, api: &str, stats: &ResponseStats, rest: bool) {
    let all = stats.snapshot();
    let statuses: Vec<String> = all.iter().map(|(k, _)| k.status.to_string()).collect();
    let labels = |i: usize| -> Vec<(&str, &str)> {
        let key = &all[i].0;
        let mut labels = Vec::with_capacity(3);
        if rest {
            labels.push(("method", key.method.as_str()));
        }
        labels.push(("endpoint", key.endpoint.as_str()));
        labels.push(("status", statuses[i].as_str()));
        labels
    };
    let failed = |i: usize| {
        let status = all[i].0.status;
        if rest {
            status >= 400
        } else {
            status != 0
        }
    };
    let total = format!("{api}_responses_total");
    e.family(&total, Type::Counter, "total number of responses");
    for (i, (_, s)) in all.iter().enumerate() {
        e.sample(&total, &labels(i), s.count as f64);
    }
    let fail = format!("{api}_responses_fail_total");
    e.family(&fail, Type::Counter, "total number of failed responses");
    for (i, (_, s)) in all.iter().enumerate() {
        let count = if failed(i) { s.count } else { 0 };
        e.sample(&fail, &labels(i), count as f64);
    }
    for (suffix, help, pick) in [
        ("avg_duration_seconds", "average response duration", 0),
        ("min_duration_seconds", "minimum response duration", 1),
        ("max_duration_seconds", "maximum response duration", 2),
    ] {
        let name = format!("{api}_responses_{suffix}");
        e.family(&name, Type::Gauge, help);
        for (i, (_, s)) in all.iter().enumerate() {
            let micros = match pick {
                0 => s.avg_micros(),
                1 => s.min_micros as f64,
                _ => s.max_micros as f64,
            };
            e.sample(&name, &labels(i), micros / 1e6);
        }
    }
    let name = format!("{api}_responses_duration_seconds");
    e.family(&name, Type::Histogram, "response duration histogram");
    for (i, (_, s)) in all.iter().enumerate() {
        e.histogram(&name, &labels(i), &s.histogram);
    }
}
