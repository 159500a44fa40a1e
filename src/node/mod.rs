//! The node: what a shoal peer can do, independent of how it was asked (REST, gRPC).
//!
//! [`Node`] holds handles only: settings, the consensus handle and the registry of
//! local collections. Its operations live in sibling files by concern:
//! `collections.rs` (metadata through Raft), `points.rs` (data, straight to shards),
//! `replicas.rs` (writes and reads through the shards' replica sets, and serving other
//! peers' calls to replicas held here), `recovery.rs` (refilling Dead replicas and running the shard transfers this peer is the
//! source of, by `stream_records.rs` or `snapshot_transfer.rs`), `consistency.rs` (the
//! periodic comparison of a shard's replicas that marks a diverged one Dead), `transfers.rs` (user-requested
//! replicate / move / drop of shard replicas), `cluster.rs` (joining, membership, cluster
//! status) and `applier.rs` (executes committed metadata effects on local storage).

mod applier;
pub mod cluster;
pub mod collections;
mod consistency;
pub mod full_snapshots;
pub mod issues;
mod metrics_text;
pub mod points;
pub mod read_limits;
mod recovery;
mod replicas;
pub mod shard_snapshots;
pub mod snapshot_install;
mod snapshot_jobs;
mod snapshot_transfer;
pub mod snapshots;
mod stream_records;
pub mod tasks;
pub mod telemetry;
pub mod transfers;

use std::path::Path;
use std::sync::Arc;

use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::collection::registry::CollectionRegistry;
use crate::consensus::transport::{NoPeers, RaftTransport};
use crate::consensus::{Consensus, ConsensusConfig};
use crate::error::{Error, Result};
use crate::replication::remote::{RemoteConfig, ShardClients};
use crate::settings::Settings;
use crate::transport::PeerSecurity;

pub struct Node {
    pub settings: Arc<Settings>,
    pub consensus: Consensus,
    pub collections: Arc<CollectionRegistry>,
    /// Snapshot and recovery jobs with their outcomes.
    pub tasks: Arc<tasks::TaskRegistry>,
    /// Counters of API responses, snapshot jobs and transfers (`GET /metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Issues found on this peer (`GET /issues`).
    pub issues: issues::Issues,
    /// Last known point counts, for metrics that must not wait on a busy shard.
    pub(crate) point_counts: telemetry::PointCounts,
    pub(crate) recovery_locks: snapshots::RecoveryLocks,
    /// Present when `cluster.enabled`: the transport to other peers and membership details.
    pub(crate) membership: Option<cluster::Membership>,
    /// Calls to shard replicas on other peers.
    pub(crate) shard_clients: ShardClients,
    /// The log index up to which this peer's applier has executed committed effects.
    pub(crate) effects_executed: watch::Receiver<u64>,
    /// Writes taken by replicas that receive a snapshot transfer (see `snapshot_transfer.rs`).
    pub(crate) write_recorders: snapshot_transfer::WriteRecorders,
    /// The transfers this peer runs as their source right now (see `recovery.rs`).
    pub(crate) running_transfers: recovery::RunningTransfers,
    /// Wakes the recovery loop before its next round (e.g. right after a snapshot
    /// recovery marked replicas Dead that this peer is to re-sync).
    pub(crate) recovery_kick: tokio::sync::Notify,
    /// Writes this peer routed or received that have not ended yet (see `inflight.rs`).
    pub(crate) inflight: crate::replication::inflight::InflightWrites,
    /// The latest consistency check of each shard this peer checks (see `consistency.rs`).
    pub(crate) consistency_reports: crate::replication::consistency::CheckReports,
}

impl Node {
    /// Prepares directories, founds, joins or rejoins the cluster when clustering is
    /// enabled (see `cluster.rs`), starts consensus, opens the local collections the cluster
    /// state places here, and starts the applier.
    pub async fn start(settings: Settings, args: cluster::ClusterArgs) -> Result<Arc<Node>> {
        let storage = &settings.storage;
        create_dir(&storage.storage_path)?;
        create_dir(&storage.snapshots_path)?;
        reset_temp_dir(&storage.temp_dir())?;
        crate::snapshot::store::SnapshotStore::new(&storage.snapshots_path).remove_leftovers()?;

        // The cluster secret and TLS of every call to another peer (none unless clustered).
        let security = if settings.cluster.enabled {
            PeerSecurity::from_settings(&settings)?
        } else {
            PeerSecurity::none()
        };
        let prepared = cluster::prepare(&settings, &args, &security).await?;
        let transport: Arc<dyn RaftTransport> = match &prepared {
            Some(prepared) => prepared.membership.transport.clone(),
            None => Arc::new(NoPeers),
        };
        let (applied_tx, applied_rx) = mpsc::unbounded_channel();
        let consensus_config = ConsensusConfig {
            storage_path: storage.storage_path.clone(),
            tick_period_ms: settings.cluster.consensus.tick_period_ms,
            compact_threshold: settings.cluster.consensus.compact_wal_entries,
            this_uri: prepared.as_ref().and_then(|p| p.this_uri.clone()),
            ..ConsensusConfig::default()
        };
        let (consensus, state) = tokio::task::spawn_blocking(move || {
            Consensus::start_with_transport(consensus_config, transport, applied_tx)
        })
        .await
        .map_err(Error::service)??;
        if let Some(prepared) = &prepared {
            prepared.membership.transport.attach(consensus.clone());
        } else if consensus.raft_info().voters.len() > 1 {
            tracing::warn!(
                "this peer's storage belongs to a multi-peer cluster but cluster.enabled is false: \
                 it cannot reach the other peers, and metadata changes will fail"
            );
        }
        let collections = Arc::new(CollectionRegistry::new(&storage.storage_path)?);
        let peer_id = consensus.peer_id();
        {
            let collections = collections.clone();
            tokio::task::spawn_blocking(move || {
                applier::open_placed_here(&collections, &state, peer_id)
            })
            .await
            .map_err(Error::service)??;
        }
        let (executed_tx, effects_executed) = watch::channel(consensus.loaded_index());
        tokio::spawn(applier::run(
            applied_rx,
            collections.clone(),
            peer_id,
            executed_tx,
        ));
        let shard_clients = ShardClients::new(RemoteConfig {
            call_timeout: Duration::from_millis(settings.cluster.grpc_timeout_ms),
            connect_timeout: Duration::from_millis(settings.cluster.connection_timeout_ms),
            security,
        });
        let (membership, background) = match prepared {
            Some(p) => (Some(p.membership), Some((p.restarted, p.this_uri))),
            None => (None, None),
        };
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let node = Arc::new(Node {
            settings: Arc::new(settings),
            consensus,
            collections,
            tasks: Arc::new(tasks::TaskRegistry::new(metrics.clone())),
            metrics,
            issues: Default::default(),
            point_counts: Default::default(),
            recovery_locks: snapshots::RecoveryLocks::default(),
            membership,
            shard_clients,
            effects_executed,
            write_recorders: Default::default(),
            running_transfers: Default::default(),
            recovery_kick: Default::default(),
            inflight: Default::default(),
            consistency_reports: Default::default(),
        });
        tokio::spawn(snapshot_install::watch_stale_recoveries(node.clone()));
        if let Some((restarted, this_uri)) = background {
            cluster::start_background(&node, restarted, this_uri);
        }
        Ok(node)
    }

    /// Makes every local shard durable and stops consensus.
    pub async fn shutdown(&self) {
        let collections = self.collections.clone();
        let flushed = tokio::task::spawn_blocking(move || {
            for collection in collections.all() {
                if let Err(err) = collection.flush() {
                    tracing::error!(collection = collection.name(), %err, "flush at shutdown failed");
                }
            }
        })
        .await;
        if let Err(err) = flushed {
            tracing::error!(%err, "flush task failed");
        }
        self.consensus.shutdown().await;
    }
}

fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| Error::io(format!("creating {}", path.display()), e))
}

/// Temporary files of an earlier run are never needed again: wipe them at start-up.
fn reset_temp_dir(path: &Path) -> Result<()> {
    if path.exists() {
        std::fs::remove_dir_all(path)
            .map_err(|e| Error::io(format!("cleaning {}", path.display()), e))?;
    }
    create_dir(path)
}

/// Runs storage work (fsyncs, scans, archive streaming) on a blocking thread.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(Error::service)?
}
