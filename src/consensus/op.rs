//! Operations on the cluster's metadata. Each one is proposed to Raft, committed to the
//! log, and applied by every peer in log order through [`super::state::ClusterState::apply`].
//!
//! Ops are serialised as JSON in the log entries. They carry every value the apply needs
//! (e.g. shard placement is chosen by the proposer and is part of the op), so applying
//! the same log yields the same state on every peer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::recovery::{RecoveryScope, SnapshotPriority};
use super::state::ReplicaState;
use super::transfer::ShardTransfer;
use crate::collection::config::{CollectionConfig, UpdateCollection};
use crate::types::{PeerId, ShardId};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterOp {
    /// Create a collection with its shards placed on the given peers.
    CreateCollection {
        name: String,
        config: CollectionConfig,
        placement: BTreeMap<ShardId, Vec<PeerId>>,
    },
    /// Change a collection's configuration (`PATCH /collections/{name}`).
    UpdateCollection {
        name: String,
        diff: UpdateCollection,
    },
    /// Delete a collection and every alias pointing at it.
    DeleteCollection { name: String },
    /// Apply alias actions atomically: all of them or none.
    UpdateAliases { actions: Vec<AliasAction> },
    /// Change the state of one replica of a shard (e.g. mark a replica that failed a
    /// write `Dead`). Refused when it would leave the shard without an Active replica.
    SetReplicaState {
        collection: String,
        shard: ShardId,
        peer: PeerId,
        state: ReplicaState,
    },
    /// Add a replica of a shard on a peer that holds none. It starts Dead, so that it
    /// takes no traffic until a transfer has filled it and marked it Active.
    AddReplica {
        collection: String,
        shard: ShardId,
        peer: PeerId,
    },
    /// Remove a peer's replica of a shard. Refused for a shard's only replica and for its
    /// last Active one.
    RemoveReplica {
        collection: String,
        shard: ShardId,
        peer: PeerId,
    },
    /// Record a shard transfer and make its target Partial (added if the peer held no
    /// replica). Refused unless the source holds an Active replica.
    StartTransfer {
        collection: String,
        transfer: ShardTransfer,
    },
    /// A transfer's copy is complete: its target becomes Active and, for a move, the
    /// source's replica is removed in the same step.
    FinishTransfer {
        collection: String,
        shard: ShardId,
        to: PeerId,
    },
    /// Forget a transfer; its target is removed (`drop_target`) or left Dead.
    AbortTransfer {
        collection: String,
        shard: ShardId,
        to: PeerId,
        drop_target: bool,
    },
    /// A snapshot recovery on `peer` is about to replace its copies of `shards`
    /// (see `consensus/recovery.rs`). Refused while another peer recovers the collection.
    BeginRecovery {
        collection: String,
        peer: PeerId,
        shards: Vec<ShardId>,
    },
    /// The recovered copies are in place: settle every shard's replica states by priority.
    FinishRecovery {
        collection: String,
        peer: PeerId,
        shards: Vec<ShardId>,
        priority: SnapshotPriority,
        scope: RecoveryScope,
    },
    /// A recovery on `peer` failed or died: its out-of-service replicas are re-synced.
    AbortRecovery { collection: String, peer: PeerId },
}

/// One action of `POST /collections/aliases`, in Qdrant's JSON shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AliasAction {
    CreateAlias {
        collection_name: String,
        alias_name: String,
    },
    DeleteAlias {
        alias_name: String,
    },
    RenameAlias {
        old_alias_name: String,
        new_alias_name: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_actions_use_qdrant_json() {
        let json = r#"[{"create_alias": {"collection_name": "c", "alias_name": "a"}},
                       {"rename_alias": {"old_alias_name": "a", "new_alias_name": "b"}},
                       {"delete_alias": {"alias_name": "b"}}]"#;
        let actions: Vec<AliasAction> = serde_json::from_str(json).unwrap();
        assert_eq!(actions.len(), 3);
        assert!(
            matches!(&actions[2], AliasAction::DeleteAlias { alias_name } if alias_name == "b")
        );
    }
}
