//! Changes of shard placement asked for by a user (`POST /collections/{name}/cluster`):
//! `replicate_shard`, `move_shard`, `abort_transfer` and `drop_replica`, and the transfers
//! `GET /collections/{name}/cluster` lists.
//!
//! A new replica is added through consensus as Dead; the recovery loop (`recovery.rs`)
//! then fills it with a `stream_records` transfer from the shard's recovery source (its
//! lowest-id Active replica, which need not be `from_peer_id`) and marks it Active. A move
//! is a replication followed, once the new replica is Active, by dropping the old one.
//! Aborting removes a target replica that is not Active yet. A transfer in progress is a
//! Partial replica; the list shows those.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::Node;
use crate::consensus::op::ClusterOp;
use crate::consensus::state::ReplicaState;
use crate::error::{Error, Result};
use crate::replication::replica_set::ReplicaSet;
use crate::types::{PeerId, ShardId};

/// How long a move waits for its new replica to become Active before giving up (the new
/// replica then stays; the old one is kept).
const MOVE_WAIT: Duration = Duration::from_secs(600);

/// The body of `POST /collections/{name}/cluster`, in Qdrant's shape.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ClusterOperation {
    MoveShard(ShardTransferRequest),
    ReplicateShard(ShardTransferRequest),
    AbortTransfer(ShardTransferRequest),
    DropReplica(DropReplicaRequest),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ShardTransferRequest {
    pub shard_id: ShardId,
    pub from_peer_id: PeerId,
    pub to_peer_id: PeerId,
    /// Only `stream_records` is implemented.
    #[serde(default)]
    pub method: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropReplicaRequest {
    pub shard_id: ShardId,
    pub peer_id: PeerId,
}

/// A transfer in progress, as `GET /collections/{name}/cluster` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShardTransferInfo {
    pub shard_id: ShardId,
    pub from: PeerId,
    pub to: PeerId,
    pub sync: bool,
    pub method: &'static str,
}

impl Node {
    /// Runs one `POST /collections/{name}/cluster` operation.
    pub async fn update_collection_cluster(
        self: &Arc<Self>,
        name_or_alias: &str,
        operation: ClusterOperation,
    ) -> Result<()> {
        let collection = self.collection(name_or_alias)?;
        let name = collection.name().to_string();
        match operation {
            ClusterOperation::ReplicateShard(request) => {
                self.start_replication(&name, &request).await
            }
            ClusterOperation::MoveShard(request) => {
                self.start_replication(&name, &request).await?;
                tokio::spawn(finish_move(self.clone(), name, request));
                Ok(())
            }
            ClusterOperation::AbortTransfer(request) => {
                let set = self.replica_set(&name, request.shard_id)?;
                match set.replicas.get(&request.to_peer_id) {
                    Some(ReplicaState::Dead | ReplicaState::Partial) => {
                        self.remove_replica(&name, request.shard_id, request.to_peer_id)
                            .await
                    }
                    _ => Err(Error::NotFound(format!(
                        "no transfer of {} to peer {} is in progress",
                        set.describe(),
                        request.to_peer_id
                    ))),
                }
            }
            ClusterOperation::DropReplica(request) => {
                self.remove_replica(&name, request.shard_id, request.peer_id)
                    .await
            }
        }
    }

    /// Transfers in progress: every Partial replica, filled from its shard's recovery source.
    pub(crate) fn shard_transfers(&self, collection: &str) -> Vec<ShardTransferInfo> {
        let state = self.consensus.state();
        let Some(collection_state) = state.collections.get(collection) else {
            return Vec::new();
        };
        let mut transfers = Vec::new();
        for (shard, replicas) in &collection_state.shards {
            let set = ReplicaSet {
                collection: collection.to_string(),
                shard: *shard,
                this_peer: self.consensus.peer_id(),
                replicas: replicas.clone(),
            };
            let Some(from) = set.recovery_source() else {
                continue;
            };
            for (peer, state) in replicas {
                if *state == ReplicaState::Partial {
                    transfers.push(ShardTransferInfo {
                        shard_id: *shard,
                        from,
                        to: *peer,
                        sync: false,
                        method: "stream_records",
                    });
                }
            }
        }
        transfers
    }

    async fn start_replication(&self, name: &str, request: &ShardTransferRequest) -> Result<()> {
        if let Some(method) = request.method.as_deref().filter(|m| *m != "stream_records") {
            return Err(Error::BadInput(format!(
                "shard transfer method `{method}` is not supported; use `stream_records`"
            )));
        }
        let set = self.replica_set(name, request.shard_id)?;
        if set.replicas.get(&request.from_peer_id) != Some(&ReplicaState::Active) {
            return Err(Error::BadInput(format!(
                "peer {} holds no active replica of {}",
                request.from_peer_id,
                set.describe()
            )));
        }
        if !self.consensus.peers().contains_key(&request.to_peer_id) {
            return Err(Error::NotFound(format!(
                "Peer {} is not a member of the cluster",
                request.to_peer_id
            )));
        }
        self.propose(ClusterOp::AddReplica {
            collection: name.to_string(),
            shard: request.shard_id,
            peer: request.to_peer_id,
        })
        .await
    }

    async fn remove_replica(&self, name: &str, shard: ShardId, peer: PeerId) -> Result<()> {
        self.propose(ClusterOp::RemoveReplica {
            collection: name.to_string(),
            shard,
            peer,
        })
        .await
    }
}

/// The second half of a move: once the new replica is Active, drop the old one.
async fn finish_move(node: Arc<Node>, name: String, request: ShardTransferRequest) {
    let deadline = Instant::now() + MOVE_WAIT;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Ok(set) = node.replica_set(&name, request.shard_id) else {
            return; // The collection is gone.
        };
        match set.replicas.get(&request.to_peer_id) {
            Some(ReplicaState::Active) => {}
            Some(_) => continue,
            None => return, // Aborted.
        }
        match node
            .remove_replica(&name, request.shard_id, request.from_peer_id)
            .await
        {
            Ok(()) => {
                tracing::info!(collection = %name, shard = request.shard_id, from = request.from_peer_id, to = request.to_peer_id, "shard moved")
            }
            Err(err) => {
                tracing::warn!(collection = %name, shard = request.shard_id, %err, "a moved shard's old replica could not be dropped")
            }
        }
        return;
    }
    tracing::warn!(collection = %name, shard = request.shard_id, "a shard move did not finish in time; the old replica stays");
}
