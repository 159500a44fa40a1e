//! The cluster-side rules of a snapshot recovery: which replica states the recovered
//! shards get, decided in the pure state machine so that every peer agrees.
//!
//! A recovery on a peer runs in three committed steps around the local data swap:
//!
//! 1. [`ClusterOp::BeginRecovery`]: marks the collection as being recovered by this peer
//!    (a second recovery of it, from any peer, is refused with 409 until this one ends),
//!    makes the peer a replica of every recovered shard it did not hold, and takes its
//!    replicas of those shards out of service as `ManualRecovery` (no reads, no writes,
//!    no automatic recovery). A shard's last Active replica stays Active.
//! 2. The peer swaps the snapshot's data into its local shards (no consensus).
//! 3. [`ClusterOp::FinishRecovery`]: per shard, with `others` = the Active replicas on
//!    other peers, applies the priority: `snapshot` activates the local copy, drops the
//!    replicas above the replication factor and marks the rest Dead (the automatic
//!    recovery then re-copies them from this peer); `replica` marks the local copy Dead
//!    (re-synced from an Active replica); `no_sync` activates it and leaves the others.
//!    With no other Active replica the local copy is activated whatever the priority.
//!
//! A recovery that fails or dies between 1 and 3 is closed by
//! [`ClusterOp::AbortRecovery`] (proposed by the failing call, or by the peer's recovery
//! watcher when it finds the marker with no recovery running): replicas it added are
//! removed again, and its other `ManualRecovery` replicas become Dead, so they are
//! re-synced with what the cluster still serves.
//!
//! [`ClusterOp::BeginRecovery`]: super::op::ClusterOp::BeginRecovery
//! [`ClusterOp::FinishRecovery`]: super::op::ClusterOp::FinishRecovery
//! [`ClusterOp::AbortRecovery`]: super::op::ClusterOp::AbortRecovery

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::effect::Effect;
use super::state::{ClusterState, CollectionState, RecoveryMark, ReplicaState};
use crate::error::{Error, Result};
use crate::types::{PeerId, ShardId};

/// Which copy wins when a recovered shard has Active replicas on other peers
/// (docs/snapshots.md). On a single node there are none, so all three behave alike.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotPriority {
    /// Existing replicas win (shoal's default): the recovered copy is re-synced from them.
    #[default]
    Replica,
    /// The snapshot wins; the other replicas are re-synced from it.
    Snapshot,
    /// The snapshot is activated; other replicas are left as they are.
    NoSync,
}

/// Whether a whole collection or a single shard is recovered: they differ in what
/// `snapshot` priority does with the other replicas (Qdrant's rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryScope {
    /// Replicas above the replication factor are dropped, the rest marked Dead.
    Collection,
    /// Every other replica is marked Dead; none is dropped.
    Shard,
}

impl ClusterState {
    pub(super) fn begin_recovery(
        &mut self,
        collection: &str,
        peer: PeerId,
        shards: &[ShardId],
    ) -> Result<Vec<Effect>> {
        let state = self
            .collections
            .get(collection)
            .ok_or_else(|| Error::collection_not_found(collection))?;
        if let Some(other) = state
            .recovering
            .as_ref()
            .map(|m| m.peer)
            .filter(|p| *p != peer)
        {
            return Err(Error::Conflict(format!(
                "collection `{collection}` is being recovered from a snapshot on peer {other}; \
                 try again when that recovery has finished"
            )));
        }
        check_shards(collection, state, shards)?;
        let mut next = state.clone();
        let mut effects = Vec::new();
        let mut added = Vec::new();
        for shard in shards {
            let replicas = next.shards.get_mut(shard).expect("checked above");
            match replicas.get(&peer) {
                None => {
                    replicas.insert(peer, ReplicaState::ManualRecovery);
                    added.push(*shard);
                    effects.push(Effect::ReplicaAdded {
                        collection: collection.to_string(),
                        shard: *shard,
                        peer,
                    });
                }
                Some(ReplicaState::Active) if active_elsewhere(replicas, peer) == 0 => {}
                Some(_) => {
                    replicas.insert(peer, ReplicaState::ManualRecovery);
                }
            }
        }
        next.recovering = Some(RecoveryMark { peer, added });
        self.collections.insert(collection.to_string(), next);
        Ok(effects)
    }

    pub(super) fn finish_recovery(
        &mut self,
        collection: &str,
        peer: PeerId,
        shards: &[ShardId],
        priority: SnapshotPriority,
        scope: RecoveryScope,
    ) -> Result<Vec<Effect>> {
        let state = self
            .collections
            .get(collection)
            .ok_or_else(|| Error::collection_not_found(collection))?;
        if state.recovering.as_ref().map(|m| m.peer) != Some(peer) {
            return Err(Error::Conflict(format!(
                "no recovery of collection `{collection}` by peer {peer} is in progress \
                 (it was aborted, or another peer's recovery holds it)"
            )));
        }
        check_shards(collection, state, shards)?;
        let keep_others = state.config.params.replication_factor.max(1) as usize - 1;
        let mut next = state.clone();
        let mut effects = Vec::new();
        for shard in shards {
            let replicas = next.shards.get_mut(shard).expect("checked above");
            let removed = settle_shard(replicas, peer, priority, scope, keep_others);
            effects.extend(removed.into_iter().map(|holder| Effect::ReplicaRemoved {
                collection: collection.to_string(),
                shard: *shard,
                peer: holder,
            }));
        }
        next.recovering = None;
        self.collections.insert(collection.to_string(), next);
        Ok(effects)
    }

    pub(super) fn abort_recovery(&mut self, collection: &str, peer: PeerId) -> Result<Vec<Effect>> {
        let state = self
            .collections
            .get_mut(collection)
            .ok_or_else(|| Error::collection_not_found(collection))?;
        let added = match &state.recovering {
            Some(mark) if mark.peer == peer => {
                let added = mark.added.clone();
                state.recovering = None;
                added
            }
            _ => Vec::new(),
        };
        let mut effects = Vec::new();
        for (shard, replicas) in state.shards.iter_mut() {
            if replicas.get(&peer) != Some(&ReplicaState::ManualRecovery) {
                continue;
            }
            if added.contains(shard) {
                replicas.remove(&peer);
                effects.push(Effect::ReplicaRemoved {
                    collection: collection.to_string(),
                    shard: *shard,
                    peer,
                });
            } else if active_elsewhere(replicas, peer) > 0 {
                replicas.insert(peer, ReplicaState::Dead);
            } else {
                replicas.insert(peer, ReplicaState::Active);
            }
        }
        Ok(effects)
    }
}

/// Applies the priority to one shard's replicas; returns the peers whose replica is
/// dropped.
fn settle_shard(
    replicas: &mut BTreeMap<PeerId, ReplicaState>,
    peer: PeerId,
    priority: SnapshotPriority,
    scope: RecoveryScope,
    keep_others: usize,
) -> Vec<PeerId> {
    if active_elsewhere(replicas, peer) == 0 {
        replicas.insert(peer, ReplicaState::Active);
        return Vec::new();
    }
    match priority {
        SnapshotPriority::NoSync => {
            replicas.insert(peer, ReplicaState::Active);
            Vec::new()
        }
        SnapshotPriority::Replica => {
            replicas.insert(peer, ReplicaState::Dead);
            Vec::new()
        }
        SnapshotPriority::Snapshot => {
            replicas.insert(peer, ReplicaState::Active);
            // Drop replicas above the replication factor: not-Active ones first, then
            // the highest peer ids, so the choice is the same on every peer.
            let mut others: Vec<(PeerId, ReplicaState)> = replicas
                .iter()
                .filter(|(p, _)| **p != peer)
                .map(|(p, s)| (*p, *s))
                .collect();
            others.sort_by_key(|(p, s)| (*s == ReplicaState::Active, std::cmp::Reverse(*p)));
            let excess = match scope {
                RecoveryScope::Collection => others.len().saturating_sub(keep_others),
                RecoveryScope::Shard => 0,
            };
            let removed: Vec<PeerId> = others[..excess].iter().map(|(p, _)| *p).collect();
            for (other, _) in &others {
                if removed.contains(other) {
                    replicas.remove(other);
                } else {
                    replicas.insert(*other, ReplicaState::Dead);
                }
            }
            removed
        }
    }
}

/// Active replicas on peers other than `peer`.
fn active_elsewhere(replicas: &BTreeMap<PeerId, ReplicaState>, peer: PeerId) -> usize {
    replicas
        .iter()
        .filter(|(p, s)| **p != peer && **s == ReplicaState::Active)
        .count()
}

fn check_shards(collection: &str, state: &CollectionState, shards: &[ShardId]) -> Result<()> {
    match shards.iter().find(|s| !state.shards.contains_key(s)) {
        Some(missing) => Err(Error::NotFound(format!(
            "shard {missing} of collection `{collection}` does not exist"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::op::ClusterOp;
    use ReplicaState::*;

    fn begin(peer: PeerId, shards: Vec<ShardId>) -> ClusterOp {
        ClusterOp::BeginRecovery {
            collection: "c".into(),
            peer,
            shards,
        }
    }

    fn finish(peer: PeerId, priority: SnapshotPriority, scope: RecoveryScope) -> ClusterOp {
        ClusterOp::FinishRecovery {
            collection: "c".into(),
            peer,
            shards: vec![0],
            priority,
            scope,
        }
    }

    fn abort(peer: PeerId) -> ClusterOp {
        ClusterOp::AbortRecovery {
            collection: "c".into(),
            peer,
        }
    }

    /// A collection `c` with replication factor `rf` and the given replicas of shard 0.
    fn cluster(rf: u32, replicas: &[(PeerId, ReplicaState)]) -> ClusterState {
        let body: crate::collection::config::CreateCollection = serde_json::from_value(
            serde_json::json!({"vectors": {"size": 2, "distance": "Dot"}, "replication_factor": rf}),
        )
        .unwrap();
        let config = body.into_config(&Default::default()).unwrap();
        let mut state = ClusterState::default();
        state
            .apply(&ClusterOp::CreateCollection {
                name: "c".into(),
                config,
                placement: [(0, replicas.iter().map(|(p, _)| *p).collect())].into(),
            })
            .unwrap();
        for (peer, replica_state) in replicas {
            state
                .collections
                .get_mut("c")
                .unwrap()
                .shards
                .get_mut(&0)
                .unwrap()
                .insert(*peer, *replica_state);
        }
        state
    }

    fn shard0(state: &ClusterState) -> Vec<(PeerId, ReplicaState)> {
        state.collections["c"].shards[&0]
            .iter()
            .map(|(p, s)| (*p, *s))
            .collect()
    }

    fn recover(
        state: &mut ClusterState,
        peer: PeerId,
        priority: SnapshotPriority,
        scope: RecoveryScope,
    ) -> Vec<Effect> {
        let op = begin(peer, vec![0]);
        let mut effects = state.apply(&op).unwrap();
        let finish = finish(peer, priority, scope);
        effects.extend(state.apply(&finish).unwrap());
        assert_eq!(state.collections["c"].recovering, None);
        effects
    }

    #[test]
    fn begin_takes_local_replicas_out_of_service_but_never_the_last_active_one() {
        let mut state = cluster(2, &[(1, Active), (2, Active)]);
        let op = begin(2, vec![0]);
        state.apply(&op).unwrap();
        assert_eq!(shard0(&state), vec![(1, Active), (2, ManualRecovery)]);

        let mut alone = cluster(1, &[(1, Active)]);
        let op = begin(1, vec![0]);
        alone.apply(&op).unwrap();
        assert_eq!(shard0(&alone), vec![(1, Active)]);
    }

    #[test]
    fn begin_makes_the_peer_a_replica_of_shards_it_did_not_hold() {
        let mut state = cluster(2, &[(1, Active), (2, Active)]);
        let op = begin(3, vec![0]);
        let effects = state.apply(&op).unwrap();
        assert_eq!(
            shard0(&state),
            vec![(1, Active), (2, Active), (3, ManualRecovery)]
        );
        assert_eq!(
            effects,
            vec![Effect::ReplicaAdded {
                collection: "c".into(),
                shard: 0,
                peer: 3
            }]
        );
    }

    #[test]
    fn a_second_recovery_of_the_collection_is_refused_until_the_first_ends() {
        let mut state = cluster(2, &[(1, Active), (2, Active)]);
        state.apply(&begin(1, vec![0])).unwrap();
        let before = state.clone();
        let err = state.apply(&begin(2, vec![0])).unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "{err}");
        assert_eq!(state, before, "a refused op changes nothing");
        state.apply(&abort(1)).unwrap();
        state.apply(&begin(2, vec![0])).unwrap();
    }

    #[test]
    fn snapshot_priority_activates_the_copy_drops_excess_and_kills_the_rest() {
        let mut state = cluster(2, &[(1, Active), (2, Active), (3, Active)]);
        let effects = recover(
            &mut state,
            2,
            SnapshotPriority::Snapshot,
            RecoveryScope::Collection,
        );
        // rf 2: one other replica is kept (Dead, re-synced from peer 2), the highest id goes.
        assert_eq!(shard0(&state), vec![(1, Dead), (2, Active)]);
        assert_eq!(
            effects,
            vec![Effect::ReplicaRemoved {
                collection: "c".into(),
                shard: 0,
                peer: 3
            }]
        );
    }

    #[test]
    fn snapshot_priority_drops_replicas_that_are_not_active_first() {
        let mut state = cluster(2, &[(1, Active), (2, Active), (3, Dead)]);
        recover(
            &mut state,
            2,
            SnapshotPriority::Snapshot,
            RecoveryScope::Collection,
        );
        assert_eq!(shard0(&state), vec![(1, Dead), (2, Active)]);
    }

    #[test]
    fn shard_scope_snapshot_priority_kills_every_other_replica_and_drops_none() {
        let mut state = cluster(2, &[(1, Active), (2, Active), (3, Active)]);
        let effects = recover(
            &mut state,
            2,
            SnapshotPriority::Snapshot,
            RecoveryScope::Shard,
        );
        assert_eq!(shard0(&state), vec![(1, Dead), (2, Active), (3, Dead)]);
        assert!(effects.is_empty());
    }

    #[test]
    fn replica_priority_resyncs_the_local_copy_from_the_others() {
        let mut state = cluster(2, &[(1, Active), (2, Active)]);
        recover(
            &mut state,
            2,
            SnapshotPriority::Replica,
            RecoveryScope::Collection,
        );
        assert_eq!(shard0(&state), vec![(1, Active), (2, Dead)]);
    }

    #[test]
    fn no_sync_activates_the_copy_and_leaves_the_others() {
        let mut state = cluster(2, &[(1, Active), (2, Active)]);
        recover(
            &mut state,
            2,
            SnapshotPriority::NoSync,
            RecoveryScope::Collection,
        );
        assert_eq!(shard0(&state), vec![(1, Active), (2, Active)]);
    }

    #[test]
    fn without_other_active_replicas_the_copy_wins_whatever_the_priority() {
        for priority in [
            SnapshotPriority::Replica,
            SnapshotPriority::Snapshot,
            SnapshotPriority::NoSync,
        ] {
            let mut state = cluster(2, &[(1, Dead), (2, Active)]);
            recover(&mut state, 2, priority, RecoveryScope::Collection);
            assert_eq!(shard0(&state)[1], (2, Active), "{priority:?}");
        }
    }

    #[test]
    fn abort_sends_out_of_service_replicas_to_be_resynced() {
        let mut state = cluster(2, &[(1, Active), (2, Active)]);
        let op = begin(2, vec![0]);
        state.apply(&op).unwrap();
        state.apply(&abort(2)).unwrap();
        assert_eq!(shard0(&state), vec![(1, Active), (2, Dead)]);
        assert_eq!(state.collections["c"].recovering, None);
        let finish = finish(2, SnapshotPriority::Snapshot, RecoveryScope::Collection);
        assert!(matches!(
            state.apply(&finish).unwrap_err(),
            Error::Conflict(_)
        ));
    }

    #[test]
    fn abort_removes_the_replicas_the_recovery_added() {
        let mut state = cluster(2, &[(1, Active), (2, Active)]);
        let op = begin(3, vec![0]);
        state.apply(&op).unwrap();
        let effects = state.apply(&abort(3)).unwrap();
        assert_eq!(shard0(&state), vec![(1, Active), (2, Active)]);
        assert_eq!(
            effects,
            vec![Effect::ReplicaRemoved {
                collection: "c".into(),
                shard: 0,
                peer: 3
            }]
        );
    }

    #[test]
    fn unknown_shards_are_refused() {
        let mut state = cluster(1, &[(1, Active)]);
        let op = begin(1, vec![0, 7]);
        assert!(matches!(state.apply(&op).unwrap_err(), Error::NotFound(_)));
        assert_eq!(state.collections["c"].recovering, None);
    }
}
