//! Installs a verified snapshot's shards on this peer and registers them through
//! consensus, for collection and shard recoveries alike (API, upload and start-up).
//!
//! The cluster-side rules (which copy wins, per priority) are the pure ops of
//! `consensus/recovery.rs`; this module runs them around the local data swap:
//! `BeginRecovery` (the recovered replicas leave service), the swap (one atomic directory
//! exchange when the snapshot covers exactly this peer's shards, else one exchange per
//! shard and a single reopen), then `FinishRecovery`. A failure after `BeginRecovery`
//! proposes `AbortRecovery`; a recovery killed with its peer is aborted by the peer's
//! watcher here once it runs again, so no replica is left out of service.
//!
//! On a minority partition `BeginRecovery` cannot commit: the call fails with the
//! consensus error before any local data is touched.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::{blocking, Node};
use crate::collection::Collection;
use crate::consensus::op::ClusterOp;
use crate::consensus::recovery::{RecoveryScope, SnapshotPriority};
use crate::consensus::state::ReplicaState;
use crate::error::Result;
use crate::types::{PeerId, ShardId};

/// How often a peer looks for its own recoveries that died with an earlier run.
const STALE_CHECK_PERIOD: Duration = Duration::from_secs(1);

/// What a recovery did to one shard, as the recover response's `recovery.shards` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ShardRecovery {
    pub shard_id: ShardId,
    /// `snapshot` when the recovered copy is served, `replica` when the existing replicas
    /// won and this peer's copy is being re-synced from them.
    pub winner: &'static str,
    /// This peer's replica state once the recovery was registered.
    pub state: ReplicaState,
    /// Points in this peer's copy right after the swap.
    pub points_on_this_peer: usize,
    /// Replicas on other peers marked Dead, to be re-copied from this peer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resyncing: Vec<PeerId>,
    /// Replicas above the replication factor that were dropped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<PeerId>,
}

/// The shards a recovery installs: each id with the unpacked directory holding its data.
pub(crate) struct RecoveredShards {
    pub collection: String,
    pub shards: BTreeMap<ShardId, PathBuf>,
    /// The unpacked collection directory, when it holds nothing but those shard
    /// directories: if they are exactly this peer's shards it is swapped in whole.
    pub whole: Option<PathBuf>,
    pub priority: SnapshotPriority,
    pub scope: RecoveryScope,
}

impl Node {
    /// Registers, swaps in and settles the recovered shards; the caller holds the
    /// collection's recovery lock.
    pub(crate) async fn install_recovered_shards(
        &self,
        recovered: RecoveredShards,
    ) -> Result<Vec<ShardRecovery>> {
        let name = recovered.collection.clone();
        let peer = self.consensus.peer_id();
        let ids: Vec<ShardId> = recovered.shards.keys().copied().collect();
        self.propose(ClusterOp::BeginRecovery {
            collection: name.clone(),
            peer,
            shards: ids.clone(),
        })
        .await?;
        let before = self.shard_states(&name);
        let outcome = async {
            let collection = self.swap_in(&recovered).await?;
            let points = local_points(&collection);
            drop(collection);
            self.propose(ClusterOp::FinishRecovery {
                collection: name.clone(),
                peer,
                shards: ids.clone(),
                priority: recovered.priority,
                scope: recovered.scope,
            })
            .await?;
            Ok(points)
        }
        .await;
        let points = match outcome {
            Ok(points) => points,
            Err(err) => {
                self.abort_recovery(&name).await;
                return Err(err);
            }
        };
        // Replicas just marked Dead are re-synced from this peer: start now, not at the
        // recovery loop's next round.
        self.recovery_kick.notify_one();
        let after = self.shard_states(&name);
        Ok(ids
            .iter()
            .map(|shard| {
                let old = before.get(shard).cloned().unwrap_or_default();
                let new = after.get(shard).cloned().unwrap_or_default();
                let state = new.get(&peer).copied().unwrap_or(ReplicaState::Dead);
                ShardRecovery {
                    shard_id: *shard,
                    winner: if state == ReplicaState::Active {
                        "snapshot"
                    } else {
                        "replica"
                    },
                    state,
                    points_on_this_peer: points.get(shard).copied().unwrap_or(0),
                    resyncing: peers_where(&old, &new, peer, |was, now| {
                        was == Some(ReplicaState::Active) && now == Some(ReplicaState::Dead)
                    }),
                    dropped: peers_where(&old, &new, peer, |was, now| {
                        was.is_some() && now.is_none()
                    }),
                }
            })
            .collect())
    }

    /// Swaps the recovered shard directories in and reopens the collection once.
    async fn swap_in(&self, recovered: &RecoveredShards) -> Result<Arc<Collection>> {
        let registry = self.collections.clone();
        let name = recovered.collection.clone();
        let current = self.collection(&name)?;
        let local: Vec<ShardId> = current.local_shards().keys().copied().collect();
        let config = current.config();
        drop(current);
        let whole = recovered
            .whole
            .clone()
            .filter(|_| local == recovered.shards.keys().copied().collect::<Vec<_>>());
        let shards: Vec<(ShardId, PathBuf)> = recovered
            .shards
            .iter()
            .map(|(id, dir)| (*id, dir.clone()))
            .collect();
        blocking(move || match whole {
            Some(dir) => registry.replace_data(&name, &dir, config, &local),
            None => registry.replace_shards(&name, &shards),
        })
        .await
    }

    /// Proposes `AbortRecovery` for this peer's recovery of `collection`; a failure is
    /// logged (the stale-recovery watcher retries).
    async fn abort_recovery(&self, collection: &str) {
        let op = ClusterOp::AbortRecovery {
            collection: collection.to_string(),
            peer: self.consensus.peer_id(),
        };
        if let Err(err) = self.propose(op).await {
            tracing::warn!(collection, %err, "could not abort the recovery yet; it is retried in the background");
        }
    }

    /// Replica states of every shard of `collection`.
    fn shard_states(&self, collection: &str) -> BTreeMap<ShardId, BTreeMap<PeerId, ReplicaState>> {
        self.consensus
            .state()
            .collections
            .get(collection)
            .map(|c| c.shards.clone())
            .unwrap_or_default()
    }

    /// Collections whose recovery by this peer is marked in the cluster state but runs no
    /// more (this peer died during it, or its abort could not be committed).
    fn stale_recoveries(&self) -> Vec<String> {
        let peer = self.consensus.peer_id();
        self.consensus
            .state()
            .collections
            .iter()
            .filter(|(name, c)| {
                c.recovering.as_ref().map(|m| m.peer) == Some(peer)
                    && !self.recovery_locks.is_held(name)
            })
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// Aborts this peer's recoveries that no longer run; ends when consensus stops.
pub(crate) async fn watch_stale_recoveries(node: Arc<Node>) {
    loop {
        tokio::time::sleep(STALE_CHECK_PERIOD).await;
        if !node.consensus.raft_info().running {
            return;
        }
        for collection in node.stale_recoveries() {
            tracing::warn!(
                collection,
                "a snapshot recovery on this peer did not finish; its replicas are re-synced"
            );
            node.abort_recovery(&collection).await;
        }
    }
}

fn local_points(collection: &Collection) -> BTreeMap<ShardId, usize> {
    collection
        .local_shards()
        .iter()
        .map(|(id, shard)| (*id, shard.info().points_count))
        .collect()
}

/// Other peers whose replica went from `was` to `now` as `test` says.
fn peers_where(
    old: &BTreeMap<PeerId, ReplicaState>,
    new: &BTreeMap<PeerId, ReplicaState>,
    me: PeerId,
    test: impl Fn(Option<ReplicaState>, Option<ReplicaState>) -> bool,
) -> Vec<PeerId> {
    old.keys()
        .chain(new.keys())
        .filter(|p| **p != me)
        .copied()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|p| test(old.get(p).copied(), new.get(p).copied()))
        .collect()
}

/// Says when the existing replicas won on a collection this recovery created: they were
/// empty, so the recovered collection is empty too (docs/snapshots.md).
pub(crate) fn empty_result_note(created: bool, shards: &[ShardRecovery]) -> Option<String> {
    let lost: Vec<String> = shards
        .iter()
        .filter(|s| s.winner == "replica")
        .map(|s| s.shard_id.to_string())
        .collect();
    (created && !lost.is_empty()).then(|| {
        format!(
            "priority `replica`: the collection was created by this recovery, so its other \
             replicas were empty and won; shards {} are being re-synced from them and will be \
             empty. Recover with priority `snapshot` to serve the snapshot's points",
            lost.join(", ")
        )
    })
}
