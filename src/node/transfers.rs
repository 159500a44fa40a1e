//! Changes of shard placement asked for by a user (`POST /collections/{name}/cluster`):
//! `replicate_shard`, `move_shard`, `abort_transfer` and `drop_replica`, and the transfers
//! `GET /collections/{name}/cluster` lists.
//!
//! A replication or a move is one `StartTransfer` committed through consensus, from the
//! `from_peer_id` the user named (it must hold an Active replica) with the requested
//! `method` (`stream_records` or `snapshot`; none: `storage.shard_transfer_method`). The
//! request returns once that is applied; the source peer then runs the transfer (see
//! `recovery.rs`) and commits its end, which for a move also drops the source replica.
//! Since the transfer is in the Raft state, it survives the peer that took the request.
//! Aborting forgets the transfer and removes its target replica.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Node;
use crate::consensus::op::ClusterOp;
use crate::consensus::transfer::{ShardTransfer, TransferMethod};
use crate::error::{Error, Result};
use crate::types::{PeerId, ShardId};

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
    /// `stream_records` or `snapshot`; none: the configured default.
    #[serde(default)]
    pub method: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropReplicaRequest {
    pub shard_id: ShardId,
    pub peer_id: PeerId,
}

/// A pending transfer, as `GET /collections/{name}/cluster` lists it (Qdrant's shape:
/// `sync` is true when the source keeps its replica, false for a move).
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
        drop(collection);
        match operation {
            ClusterOperation::ReplicateShard(request) => {
                self.start_transfer(&name, &request, true).await
            }
            ClusterOperation::MoveShard(request) => {
                self.start_transfer(&name, &request, false).await
            }
            ClusterOperation::AbortTransfer(request) => {
                self.propose(ClusterOp::AbortTransfer {
                    collection: name,
                    shard: request.shard_id,
                    to: request.to_peer_id,
                    drop_target: true,
                })
                .await
            }
            ClusterOperation::DropReplica(request) => {
                self.propose(ClusterOp::RemoveReplica {
                    collection: name,
                    shard: request.shard_id,
                    peer: request.peer_id,
                })
                .await
            }
        }
    }

    /// The collection's pending transfers, from the cluster state.
    pub(crate) fn shard_transfers(&self, collection: &str) -> Vec<ShardTransferInfo> {
        self.consensus
            .state()
            .transfers(collection)
            .iter()
            .map(|t| ShardTransferInfo {
                shard_id: t.shard,
                from: t.from,
                to: t.to,
                sync: t.sync,
                method: t.method.name(),
            })
            .collect()
    }

    async fn start_transfer(
        &self,
        name: &str,
        request: &ShardTransferRequest,
        sync: bool,
    ) -> Result<()> {
        let method = match request.method.as_deref() {
            Some(method) => TransferMethod::parse(method)?,
            None => self.settings.storage.shard_transfer_method,
        };
        if !self.consensus.peers().contains_key(&request.to_peer_id) {
            return Err(Error::NotFound(format!(
                "Peer {} is not a member of the cluster",
                request.to_peer_id
            )));
        }
        self.propose(ClusterOp::StartTransfer {
            collection: name.to_string(),
            transfer: ShardTransfer {
                shard: request.shard_id,
                from: request.from_peer_id,
                to: request.to_peer_id,
                method,
                sync,
            },
        })
        .await
    }
}
