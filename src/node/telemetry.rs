//! What `GET /telemetry` and `GET /cluster/telemetry` report, in Qdrant's shapes
//! (`TelemetryData`, `DistributedTelemetryData`); `metrics_text.rs` writes `GET /metrics`
//! from the same sources.
//!
//! Every fact is read without waiting on a busy collection: metadata comes from the
//! published consensus state (a clone under a short read lock), request and job counters
//! from [`crate::metrics`] atomics, and point counts from shards with a try-lock — a shard
//! (or the whole registry, during a snapshot swap) that is busy reports its last known
//! count instead ([`PointCounts`]).

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};

use parking_lot::Mutex;
use serde_json::{json, Map, Value};

use crate::consensus::state::ClusterState;
use crate::consensus::transfer::ShardTransfer;
use crate::metrics::responses::ResponseSnapshot;
use crate::metrics::ResponseStats;
use crate::node::cluster::ClusterStatus;
use crate::node::Node;
use crate::types::{ShardId, QDRANT_API_VERSION};

/// The `app.name` of telemetry and the `name` label of `app_info`.
pub const APP_NAME: &str = "shoal";

/// Last known point count of every local shard, so that a busy shard still reports.
#[derive(Default)]
pub struct PointCounts {
    known: Mutex<HashMap<(String, ShardId), usize>>,
}

impl PointCounts {
    /// Points per local shard: fresh counts where the shard is free, else the last known.
    fn read_shards(&self, node: &Node, state: &ClusterState) -> BTreeMap<(String, ShardId), usize> {
        let mut known = self.known.lock();
        if let Some(open) = node.collections.try_all() {
            for collection in open {
                for (shard, local) in collection.local_shards() {
                    if let Some(count) = local.try_points_count() {
                        known.insert((collection.name().to_string(), *shard), count);
                    }
                }
            }
        }
        // Dropped collections and shards no longer held here are forgotten.
        let me = node.consensus.peer_id();
        known.retain(|(name, shard), _| {
            state
                .collections
                .get(name)
                .and_then(|c| c.shards.get(shard))
                .is_some_and(|replicas| replicas.contains_key(&me))
        });
        known.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Points per collection held here (0 for a collection with no local shard).
    pub(super) fn read(&self, node: &Node, state: &ClusterState) -> BTreeMap<String, usize> {
        let mut counts: BTreeMap<String, usize> = state
            .collections
            .keys()
            .map(|name| (name.clone(), 0))
            .collect();
        for ((name, _), count) in self.read_shards(node, state) {
            *counts.entry(name).or_default() += count;
        }
        counts
    }
}

/// A pending transfer in Qdrant's `ShardTransferInfo` shape.
fn transfer_info(transfer: &ShardTransfer) -> Value {
    json!({
        "shard_id": transfer.shard,
        "from": transfer.from,
        "to": transfer.to,
        "sync": transfer.sync,
        "method": transfer.method.name(),
    })
}

/// Qdrant's anonymization of a name: a stable hash, printed as a number.
pub fn anonymize(value: &str) -> String {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish().to_string()
}

/// Options of `GET /telemetry`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TelemetryRequest {
    pub details_level: u32,
    pub anonymize: bool,
}

impl Node {
    /// `GET /telemetry`: Qdrant's `TelemetryData`.
    pub fn telemetry(&self, request: TelemetryRequest) -> Value {
        let state = self.consensus.state();
        let level = request.details_level;
        let name_of = |name: &str| {
            if request.anonymize {
                anonymize(name)
            } else {
                name.to_string()
            }
        };
        let mut collections = json!({
            "number_of_collections": state.collections.len(),
            "max_collections": Value::Null,
        });
        if level >= 1 {
            let me = self.consensus.peer_id();
            let shard_points = self.point_counts.read_shards(self, &state);
            let mut points: BTreeMap<String, usize> = BTreeMap::new();
            for ((name, _), count) in &shard_points {
                *points.entry(name.clone()).or_default() += count;
            }
            let list: Vec<Value> = state
                .collections
                .iter()
                .map(|(name, meta)| {
                    let config = &meta.config;
                    let vectors_per_point = config.params.vectors.by_name().len();
                    if level < 2 {
                        return json!({
                            "id": name_of(name),
                            "vectors": points.get(name).copied().unwrap_or(0) * vectors_per_point,
                            "optimizers_status": "ok",
                            "params": config.params,
                        });
                    }
                    let shards: Vec<Value> = meta
                        .shards
                        .iter()
                        .map(|(shard, replicas)| {
                            let states: Map<String, Value> = replicas
                                .iter()
                                .map(|(peer, s)| (peer.to_string(), json!(s)))
                                .collect();
                            let remote: Vec<Value> = replicas
                                .keys()
                                .filter(|peer| **peer != me)
                                .map(|peer| json!({"shard_id": shard, "peer_id": peer}))
                                .collect();
                            let local = shard_points.get(&(name.clone(), *shard)).map(|n| {
                                json!({
                                    "variant_name": "local",
                                    "status": "green",
                                    "total_optimized_points": 0,
                                    "num_points": n,
                                    "num_vectors": n * vectors_per_point,
                                })
                            });
                            json!({
                                "id": shard,
                                "key": Value::Null,
                                "local": local,
                                "remote": remote,
                                "replicate_states": states,
                            })
                        })
                        .collect();
                    json!({
                        "id": name_of(name),
                        "init_time_ms": 0,
                        "config": config,
                        "shards": shards,
                        "transfers": meta.transfers.iter().map(transfer_info).collect::<Vec<_>>(),
                        "resharding": [],
                    })
                })
                .collect();
            collections["collections"] = Value::Array(list);
        }
        json!({
            "id": uuid::Uuid::from_u64_pair(self.consensus.peer_id(), 0).to_string(),
            "app": self.app_telemetry(level),
            "collections": collections,
            "cluster": self.cluster_telemetry_part(level, request.anonymize),
            "requests": {
                "rest": {"responses": responses_telemetry(&self.metrics.rest, true)},
                "grpc": {"responses": responses_telemetry(&self.metrics.grpc, false)},
            },
        })
    }

    fn app_telemetry(&self, level: u32) -> Value {
        let startup = chrono::DateTime::<chrono::Utc>::from(self.metrics.started_at)
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let mut app = json!({
            "name": APP_NAME,
            "version": QDRANT_API_VERSION,
            "shoal_version": env!("CARGO_PKG_VERSION"),
            "features": {
                "debug": cfg!(debug_assertions),
                "service_debug_feature": false,
                "recovery_mode": false,
                "gpu": false,
                "rocksdb": false,
                "staging": false,
            },
            "jwt_rbac": false,
            "hide_jwt_dashboard": false,
            "startup": startup,
        });
        if level >= 1 {
            let in_docker = std::path::Path::new("/.dockerenv").exists();
            app["system"] = json!({
                "distribution": Value::Null,
                "distribution_version": Value::Null,
                "is_docker": in_docker,
                "container_runtime": if in_docker { "docker" } else { "none" },
                "cores": std::thread::available_parallelism().map(|n| n.get()).ok(),
                "ram_size": Value::Null,
                "disk_size": Value::Null,
                "cpu_flags": "",
                "cpu_endian": if cfg!(target_endian = "little") { "little" } else { "big" },
                "gpu_devices": Value::Null,
            });
        }
        app
    }

    fn cluster_telemetry_part(&self, level: u32, anonymize_it: bool) -> Value {
        let ClusterStatus::Enabled(info) = self.cluster_status() else {
            return json!({"enabled": false});
        };
        let cluster = &self.settings.cluster;
        let mut out = json!({
            "enabled": true,
            "status": {
                "number_of_peers": info.peers.len(),
                "term": info.raft_info.term,
                "commit": info.raft_info.commit,
                "pending_operations": info.raft_info.pending_operations,
                "role": info.raft_info.role,
                "is_voter": info.raft_info.is_voter,
                "peer_id": info.peer_id,
                "consensus_thread_status": info.consensus_thread_status,
            },
            "config": {
                "grpc_timeout_ms": cluster.grpc_timeout_ms,
                "p2p": {"connection_pool_size": 1},
                "consensus": {
                    "max_message_queue_size": cluster.consensus.max_message_queue_size,
                    "tick_period_ms": cluster.consensus.tick_period_ms,
                    "bootstrap_timeout_sec": cluster.consensus.bootstrap_timeout_sec,
                },
            },
            "metadata": {},
        });
        if level >= 2 {
            let peers: Map<String, Value> = info
                .peers
                .iter()
                .map(|(id, peer)| {
                    let uri = if anonymize_it {
                        anonymize(&peer.uri)
                    } else {
                        peer.uri.clone()
                    };
                    (id.to_string(), json!({"uri": uri}))
                })
                .collect();
            out["peers"] = Value::Object(peers);
        }
        out
    }

    /// `GET /cluster/telemetry`: Qdrant's `DistributedTelemetryData` — the cluster's
    /// collections (shards, replicas and their states, transfers) and peers, as this
    /// peer's consensus state knows them. Point counts are given for replicas held here;
    /// peer `details` for this peer (the others' are theirs to tell).
    pub fn cluster_telemetry(&self, details_level: u32) -> Value {
        let state = self.consensus.state();
        let me = self.consensus.peer_id();
        let shard_points = if details_level >= 1 {
            self.point_counts.read_shards(self, &state)
        } else {
            BTreeMap::new()
        };
        let collections: Map<String, Value> = state
            .collections
            .iter()
            .map(|(name, meta)| {
                let vectors_per_point = meta.config.params.vectors.by_name().len();
                let shards: Vec<Value> = meta
                    .shards
                    .iter()
                    .map(|(shard, replicas)| {
                        let replicas: Vec<Value> = replicas
                            .iter()
                            .map(|(peer, s)| {
                                let mut replica = json!({"peer_id": peer, "state": s});
                                if *peer == me {
                                    if let Some(n) = shard_points.get(&(name.clone(), *shard)) {
                                        replica["num_points"] = json!(n);
                                        replica["num_vectors"] = json!(n * vectors_per_point);
                                    }
                                }
                                replica
                            })
                            .collect();
                        json!({"id": shard, "key": Value::Null, "replicas": replicas})
                    })
                    .collect();
                let value = json!({
                    "id": name,
                    "shards": shards,
                    "reshardings": [],
                    "shard_transfers": meta.transfers.iter().map(transfer_info).collect::<Vec<_>>(),
                });
                (name.clone(), value)
            })
            .collect();
        let cluster = match self.cluster_status() {
            ClusterStatus::Disabled => json!({"enabled": false, "peers": {}}),
            ClusterStatus::Enabled(info) => {
                let peers: Map<String, Value> = info
                    .peers
                    .iter()
                    .map(|(id, peer)| {
                        let responsive =
                            *id == me || !info.message_send_failures.contains_key(&peer.uri);
                        let mut value = json!({"uri": peer.uri, "responsive": responsive});
                        if *id == me {
                            value["details"] = json!({
                                "version": QDRANT_API_VERSION,
                                "role": info.raft_info.role,
                                "is_voter": info.raft_info.is_voter,
                                "term": info.raft_info.term,
                                "commit": info.raft_info.commit,
                                "num_pending_operations": info.raft_info.pending_operations,
                                "consensus_thread_status": info.consensus_thread_status,
                            });
                        }
                        (id.to_string(), value)
                    })
                    .collect();
                json!({"enabled": true, "number_of_peers": peers.len(), "peers": peers})
            }
        };
        json!({"collections": collections, "cluster": cluster})
    }
}

/// `requests.rest.responses` / `requests.grpc.responses`: `"METHOD /route"` (REST) or the
/// method path (gRPC) → status → statistics.
fn responses_telemetry(stats: &ResponseStats, rest: bool) -> Value {
    let mut out = Map::new();
    for (key, s) in stats.snapshot() {
        let name = if rest {
            format!("{} {}", key.method, key.endpoint)
        } else {
            key.endpoint.clone()
        };
        let entry = out.entry(name).or_insert_with(|| json!({}));
        entry[key.status.to_string()] = json!({
            "count": s.count,
            "avg_duration_micros": s.avg_micros(),
            "min_duration_micros": s.min_micros,
            "max_duration_micros": s.max_micros,
            "total_duration_micros": s.total_micros,
            "last_responded": last_responded(&s),
        });
    }
    Value::Object(out)
}

fn last_responded(s: &ResponseSnapshot) -> Value {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(s.last_responded_ms as i64)
        .map_or(Value::Null, |at| {
            json!(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymized_names_are_stable_and_hide_the_name() {
        assert_eq!(anonymize("books"), anonymize("books"));
        assert_ne!(anonymize("books"), anonymize("films"));
        assert!(anonymize("books").chars().all(|c| c.is_ascii_digit()));
    }
}
