//! Pending shard transfers as part of the replicated cluster state: what a transfer is,
//! and the pure rules that start, finish and abort one.
//!
//! A transfer copies one shard's data from an Active replica (`from`) into another
//! peer's replica (`to`), which is Partial while it runs: it takes writes, serves no
//! reads. Because the transfer lives in the Raft state, whoever reads the state knows
//! what is left to do: the source peer runs (or, after a restart, re-runs) every
//! transfer that names it, and a transfer whose source stops being Active is aborted by
//! the same op that changes the source, so none is left waiting for a peer that will not
//! come.
//!
//! - `StartTransfer` records the transfer and makes the target Partial (adding it when
//!   the peer held no replica).
//! - `FinishTransfer` makes the target Active and, for a move (`sync == false`), removes
//!   the source's replica in the same step, so a move is never half done.
//! - `AbortTransfer` forgets the transfer and either removes the target replica (a user's
//!   abort) or leaves it Dead (for the automatic recovery to fill again).

use serde::{Deserialize, Serialize};

use super::effect::Effect;
use super::state::{ClusterState, ReplicaState};
use crate::error::{Error, Result};
use crate::types::{PeerId, ShardId};

/// How a transfer copies the data, with Qdrant's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferMethod {
    /// Scroll the source's points and upsert them into the target in batches.
    StreamRecords,
    /// Ship a snapshot of the source's shard (segments and built indexes) and swap it in.
    Snapshot,
}

impl TransferMethod {
    /// The method's name as the API spells it.
    pub fn name(self) -> &'static str {
        match self {
            TransferMethod::StreamRecords => "stream_records",
            TransferMethod::Snapshot => "snapshot",
        }
    }

    /// Parses the API's name; anything else is a 400 that lists the known names.
    pub fn parse(name: &str) -> Result<TransferMethod> {
        match name {
            "stream_records" => Ok(TransferMethod::StreamRecords),
            "snapshot" => Ok(TransferMethod::Snapshot),
            other => Err(Error::BadInput(format!(
                "unknown shard transfer method `{other}`; use `stream_records` or `snapshot`"
            ))),
        }
    }
}

/// One pending transfer of a shard of a collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardTransfer {
    pub shard: ShardId,
    pub from: PeerId,
    pub to: PeerId,
    pub method: TransferMethod,
    /// `true`: the source keeps its replica (replication, recovery); `false`: a move.
    pub sync: bool,
}

impl ClusterState {
    /// The pending transfers of a collection (none when it does not exist).
    pub fn transfers(&self, collection: &str) -> &[ShardTransfer] {
        self.collections
            .get(collection)
            .map_or(&[], |c| c.transfers.as_slice())
    }

    /// The pending transfer into `to`'s replica of a shard, if any.
    pub fn transfer_to(
        &self,
        collection: &str,
        shard: ShardId,
        to: PeerId,
    ) -> Option<&ShardTransfer> {
        self.transfers(collection)
            .iter()
            .find(|t| t.shard == shard && t.to == to)
    }

    pub(super) fn start_transfer(
        &mut self,
        collection: &str,
        transfer: &ShardTransfer,
    ) -> Result<Vec<Effect>> {
        let ShardTransfer {
            shard, from, to, ..
        } = *transfer;
        let described = format!("shard {shard} of collection `{collection}`");
        if from == to {
            return Err(Error::BadInput(format!(
                "a transfer of {described} needs two different peers, got {from} twice"
            )));
        }
        let replicas = self.shard_mut(collection, shard)?;
        if replicas.get(&from) != Some(&ReplicaState::Active) {
            return Err(Error::BadInput(format!(
                "peer {from} holds no active replica of {described}"
            )));
        }
        let added = match replicas.get(&to) {
            None => true,
            Some(ReplicaState::Dead | ReplicaState::Partial) => false,
            Some(state) => {
                return Err(Error::BadRequest(format!(
                    "peer {to} already holds a replica of {described} ({state:?})"
                )))
            }
        };
        if self.transfer_to(collection, shard, to).is_some() {
            return Err(Error::BadRequest(format!(
                "a transfer of {described} to peer {to} is already in progress"
            )));
        }
        let collection_state = self
            .collections
            .get_mut(collection)
            .expect("checked by shard_mut");
        collection_state
            .shards
            .get_mut(&shard)
            .expect("checked by shard_mut")
            .insert(to, ReplicaState::Partial);
        collection_state.transfers.push(*transfer);
        Ok(if added {
            vec![Effect::ReplicaAdded {
                collection: collection.to_string(),
                shard,
                peer: to,
            }]
        } else {
            Vec::new()
        })
    }

    pub(super) fn finish_transfer(
        &mut self,
        collection: &str,
        shard: ShardId,
        to: PeerId,
    ) -> Result<Vec<Effect>> {
        let transfer = self.take_transfer(collection, shard, to)?;
        let replicas = self.shard_mut(collection, shard)?;
        replicas.insert(to, ReplicaState::Active);
        if transfer.sync || replicas.remove(&transfer.from).is_none() {
            return Ok(Vec::new());
        }
        Ok(vec![Effect::ReplicaRemoved {
            collection: collection.to_string(),
            shard,
            peer: transfer.from,
        }])
    }

    pub(super) fn abort_transfer(
        &mut self,
        collection: &str,
        shard: ShardId,
        to: PeerId,
        drop_target: bool,
    ) -> Result<Vec<Effect>> {
        self.take_transfer(collection, shard, to)?;
        let replicas = self.shard_mut(collection, shard)?;
        if !drop_target {
            replicas.insert(to, ReplicaState::Dead);
            return Ok(Vec::new());
        }
        replicas.remove(&to);
        Ok(vec![Effect::ReplicaRemoved {
            collection: collection.to_string(),
            shard,
            peer: to,
        }])
    }

    /// Keeps the transfers of a shard true to a replica that changed state or left: a
    /// target that is no longer Partial ends its transfer; a source that is no longer an
    /// Active replica aborts its transfers, leaving their targets Dead.
    pub(super) fn settle_transfers(&mut self, collection: &str, shard: ShardId) {
        let Some(state) = self.collections.get_mut(collection) else {
            return;
        };
        let Some(replicas) = state.shards.get_mut(&shard) else {
            return;
        };
        state.transfers.retain(|t| {
            if t.shard != shard {
                return true;
            }
            if replicas.get(&t.to) != Some(&ReplicaState::Partial) {
                return false;
            }
            if replicas.get(&t.from) != Some(&ReplicaState::Active) {
                replicas.insert(t.to, ReplicaState::Dead);
                return false;
            }
            true
        });
    }

    /// [`Self::settle_transfers`] for every shard of a collection (after a snapshot
    /// recovery changed its replicas).
    pub(super) fn settle_all_transfers(&mut self, collection: &str) {
        let shards: Vec<ShardId> = self
            .collections
            .get(collection)
            .map(|c| c.shards.keys().copied().collect())
            .unwrap_or_default();
        for shard in shards {
            self.settle_transfers(collection, shard);
        }
    }

    fn take_transfer(
        &mut self,
        collection: &str,
        shard: ShardId,
        to: PeerId,
    ) -> Result<ShardTransfer> {
        let transfers = &mut self
            .collections
            .get_mut(collection)
            .ok_or_else(|| Error::collection_not_found(collection))?
            .transfers;
        let position = transfers
            .iter()
            .position(|t| t.shard == shard && t.to == to)
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no transfer of shard {shard} of collection `{collection}` to peer {to} is in progress"
                ))
            })?;
        Ok(transfers.remove(position))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::collection::config::{CollectionDefaults, CreateCollection};
    use crate::consensus::op::ClusterOp;
    use ReplicaState::*;

    /// Collection `c`: shard 0 on peers 1 and 2, shard 1 on peer 3, all Active.
    fn state() -> ClusterState {
        let body: CreateCollection = serde_json::from_value(
            json!({"vectors": {"size": 2, "distance": "Dot"}, "shard_number": 2}),
        )
        .unwrap();
        let mut state = ClusterState::default();
        state
            .apply(&ClusterOp::CreateCollection {
                name: "c".into(),
                config: body.into_config(&CollectionDefaults::default()).unwrap(),
                placement: BTreeMap::from([(0, vec![1, 2]), (1, vec![3])]),
            })
            .unwrap();
        state
    }

    fn transfer(shard: ShardId, from: PeerId, to: PeerId, sync: bool) -> ShardTransfer {
        ShardTransfer {
            shard,
            from,
            to,
            method: TransferMethod::Snapshot,
            sync,
        }
    }

    fn start(t: ShardTransfer) -> ClusterOp {
        ClusterOp::StartTransfer {
            collection: "c".into(),
            transfer: t,
        }
    }

    fn finish(shard: ShardId, to: PeerId) -> ClusterOp {
        ClusterOp::FinishTransfer {
            collection: "c".into(),
            shard,
            to,
        }
    }

    fn abort(shard: ShardId, to: PeerId, drop_target: bool) -> ClusterOp {
        ClusterOp::AbortTransfer {
            collection: "c".into(),
            shard,
            to,
            drop_target,
        }
    }

    fn set(shard: ShardId, peer: PeerId, state: ReplicaState) -> ClusterOp {
        ClusterOp::SetReplicaState {
            collection: "c".into(),
            shard,
            peer,
            state,
        }
    }

    fn replicas(state: &ClusterState, shard: ShardId) -> Vec<(PeerId, ReplicaState)> {
        state
            .replicas("c", shard)
            .unwrap()
            .clone()
            .into_iter()
            .collect()
    }

    #[test]
    fn methods_use_qdrant_names_and_unknown_ones_are_bad_input() {
        for method in [TransferMethod::StreamRecords, TransferMethod::Snapshot] {
            assert_eq!(TransferMethod::parse(method.name()).unwrap(), method);
            assert_eq!(serde_json::to_value(method).unwrap(), json!(method.name()));
        }
        let err = TransferMethod::parse("wal_delta").unwrap_err();
        assert!(matches!(err, Error::BadInput(_)), "{err}");
        assert!(err.to_string().contains("`stream_records` or `snapshot`"));
    }

    #[test]
    fn a_move_adds_a_partial_target_and_finishing_swaps_the_replicas_in_one_step() {
        let mut state = state();
        let effects = state.apply(&start(transfer(1, 3, 4, false))).unwrap();
        assert_eq!(
            effects,
            vec![Effect::ReplicaAdded {
                collection: "c".into(),
                shard: 1,
                peer: 4
            }]
        );
        assert_eq!(replicas(&state, 1), vec![(3, Active), (4, Partial)]);
        assert_eq!(state.transfers("c"), &[transfer(1, 3, 4, false)]);
        assert_eq!(
            state.transfer_to("c", 1, 4),
            Some(&transfer(1, 3, 4, false))
        );

        let effects = state.apply(&finish(1, 4)).unwrap();
        assert_eq!(
            effects,
            vec![Effect::ReplicaRemoved {
                collection: "c".into(),
                shard: 1,
                peer: 3
            }]
        );
        assert_eq!(replicas(&state, 1), vec![(4, Active)]);
        assert!(state.transfers("c").is_empty());
        // Finishing twice is a 404, and changes nothing.
        let before = state.clone();
        assert!(matches!(
            state.apply(&finish(1, 4)),
            Err(Error::NotFound(_))
        ));
        assert_eq!(state, before);
    }

    #[test]
    fn a_sync_transfer_refills_a_dead_replica_and_keeps_the_source() {
        let mut state = state();
        state.apply(&set(0, 2, Dead)).unwrap();
        let effects = state.apply(&start(transfer(0, 1, 2, true))).unwrap();
        assert!(effects.is_empty(), "the replica exists already");
        assert_eq!(replicas(&state, 0), vec![(1, Active), (2, Partial)]);
        assert!(state.apply(&finish(0, 2)).unwrap().is_empty());
        assert_eq!(replicas(&state, 0), vec![(1, Active), (2, Active)]);
    }

    #[test]
    fn starts_are_checked_and_a_refusal_changes_nothing() {
        let mut state = state();
        let before = state.clone();
        let refused = [
            (transfer(0, 1, 1, true), "two different peers"),
            (transfer(0, 4, 5, true), "no active replica"),
            (transfer(0, 1, 2, true), "already holds a replica"),
            (transfer(7, 1, 4, true), "does not exist"),
        ];
        for (t, message) in refused {
            let err = state.apply(&start(t)).unwrap_err();
            assert!(err.is_user_error(), "{err}");
            assert!(err.to_string().contains(message), "{err}");
            assert_eq!(state, before);
        }
        state.apply(&start(transfer(0, 1, 4, true))).unwrap();
        let before = state.clone();
        let err = state.apply(&start(transfer(0, 2, 4, true))).unwrap_err();
        assert!(err.to_string().contains("already in progress"), "{err}");
        assert_eq!(state, before);
    }

    #[test]
    fn a_users_abort_removes_the_target_and_an_automatic_one_leaves_it_dead() {
        let mut state = state();
        state.apply(&start(transfer(0, 1, 4, false))).unwrap();
        let effects = state.apply(&abort(0, 4, true)).unwrap();
        assert!(matches!(
            &effects[..],
            [Effect::ReplicaRemoved { peer: 4, .. }]
        ));
        assert_eq!(replicas(&state, 0), vec![(1, Active), (2, Active)]);
        assert!(state.transfers("c").is_empty());
        assert!(matches!(
            state.apply(&abort(0, 4, true)),
            Err(Error::NotFound(_))
        ));

        state.apply(&start(transfer(0, 1, 4, true))).unwrap();
        assert!(state.apply(&abort(0, 4, false)).unwrap().is_empty());
        assert_eq!(
            replicas(&state, 0),
            vec![(1, Active), (2, Active), (4, Dead)]
        );
        assert!(state.transfers("c").is_empty());
    }

    #[test]
    fn a_source_that_stops_being_active_aborts_its_transfers() {
        let mut state = state();
        state.apply(&start(transfer(0, 2, 4, false))).unwrap();
        state.apply(&start(transfer(0, 1, 5, true))).unwrap();
        // The move's source fails a write: its transfer ends, its target is Dead (for the
        // automatic recovery), the other transfer goes on.
        state.apply(&set(0, 2, Dead)).unwrap();
        assert_eq!(
            replicas(&state, 0),
            vec![(1, Active), (2, Dead), (4, Dead), (5, Partial)]
        );
        assert_eq!(state.transfers("c"), &[transfer(0, 1, 5, true)]);
        // The last Active replica cannot be deactivated, so its transfer stays too.
        assert!(state.apply(&set(0, 1, Dead)).is_err());
        assert_eq!(state.transfers("c").len(), 1);
    }

    #[test]
    fn a_target_that_leaves_partial_or_a_removed_replica_ends_the_transfer() {
        let mut state = state();
        state.apply(&start(transfer(0, 1, 4, true))).unwrap();
        state.apply(&set(0, 4, Dead)).unwrap();
        assert!(state.transfers("c").is_empty());
        assert_eq!(replicas(&state, 0)[2], (4, Dead));

        state.apply(&start(transfer(0, 1, 4, true))).unwrap();
        state
            .apply(&ClusterOp::RemoveReplica {
                collection: "c".into(),
                shard: 0,
                peer: 1,
            })
            .unwrap();
        // The source is gone: the target is Dead, the transfer forgotten.
        assert_eq!(replicas(&state, 0), vec![(2, Active), (4, Dead)]);
        assert!(state.transfers("c").is_empty());
    }

    #[test]
    fn transfers_survive_a_snapshot_of_the_state_and_go_with_their_collection() {
        let mut state = state();
        state.apply(&start(transfer(1, 3, 4, false))).unwrap();
        let bytes = serde_json::to_vec(&state).unwrap();
        let back: ClusterState = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, state);
        // A state written before transfers existed still loads.
        let mut old = serde_json::to_value(&state).unwrap();
        old["collections"]["c"]
            .as_object_mut()
            .unwrap()
            .remove("transfers");
        let loaded: ClusterState = serde_json::from_value(old).unwrap();
        assert!(loaded.transfers("c").is_empty());

        state
            .apply(&ClusterOp::DeleteCollection { name: "c".into() })
            .unwrap();
        assert!(state.transfers("c").is_empty());
    }
}
