//! Collection and alias operations. Changes go through consensus and return once they
//! are applied on this peer, so a read right after sees them; reads are answered from
//! the applied cluster state and the local shards.

use std::sync::Arc;

use serde::Serialize;

use super::Node;
use crate::collection::config::{CollectionConfig, CreateCollection, UpdateCollection};
use crate::collection::Collection;
use crate::consensus::op::{AliasAction, ClusterOp};
use crate::consensus::state::{validate_name, ReplicaState};
use crate::error::{Error, Result};
use crate::node::transfers::ShardTransferInfo;
use crate::replication::placement;
use crate::types::{PeerId, ShardId};

/// `GET /collections/{name}`, in Qdrant's shape.
#[derive(Debug, Clone, Serialize)]
pub struct CollectionInfo {
    pub status: &'static str,
    pub optimizer_status: &'static str,
    pub indexed_vectors_count: usize,
    pub points_count: usize,
    pub segments_count: usize,
    pub config: CollectionConfig,
    pub payload_schema: serde_json::Map<String, serde_json::Value>,
}

/// `GET /collections/{name}/cluster`, in Qdrant's shape.
#[derive(Debug, Clone, Serialize)]
pub struct CollectionClusterInfo {
    pub peer_id: PeerId,
    pub shard_count: usize,
    pub local_shards: Vec<LocalShardInfo>,
    pub remote_shards: Vec<RemoteShardInfo>,
    /// Transfers in progress.
    pub shard_transfers: Vec<ShardTransferInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LocalShardInfo {
    pub shard_id: ShardId,
    pub points_count: usize,
    pub state: ReplicaState,
    /// shoal's addition: the latest consistency check of the shard's replicas, on the
    /// peer that checks it (its reference replica; see `node/consistency.rs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistency_check: Option<crate::replication::consistency::CheckReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RemoteShardInfo {
    pub shard_id: ShardId,
    pub peer_id: PeerId,
    pub state: ReplicaState,
}

/// One alias, as `GET /aliases` lists it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AliasDescription {
    pub alias_name: String,
    pub collection_name: String,
}

impl Node {
    /// Resolves a name or alias to the open collection.
    pub fn collection(&self, name_or_alias: &str) -> Result<Arc<Collection>> {
        let state = self.consensus.state();
        let name = state
            .resolve(name_or_alias)
            .ok_or_else(|| Error::collection_not_found(name_or_alias))?;
        self.collections
            .get(name)
            .ok_or_else(|| Error::collection_not_found(name_or_alias))
    }

    pub async fn create_collection(&self, name: &str, body: CreateCollection) -> Result<()> {
        validate_name(name)?;
        let config = body.into_config(&self.settings.collection_defaults())?;
        // Learners count: every peer `GET /cluster` lists gets its share (placement.rs).
        let info = self.consensus.raft_info();
        let members: Vec<_> = info.voters.iter().chain(&info.learners).copied().collect();
        let placement = placement::place(
            config.params.shard_number,
            config.params.replication_factor,
            &members,
            self.consensus.peer_id(),
        );
        self.propose(ClusterOp::CreateCollection {
            name: name.to_string(),
            config,
            placement,
        })
        .await
    }

    pub async fn update_collection(
        &self,
        name_or_alias: &str,
        diff: UpdateCollection,
    ) -> Result<()> {
        let name = self.real_name(name_or_alias)?;
        self.propose(ClusterOp::UpdateCollection { name, diff })
            .await
    }

    pub async fn delete_collection(&self, name_or_alias: &str) -> Result<bool> {
        let Ok(name) = self.real_name(name_or_alias) else {
            // Qdrant answers `false` for a collection that does not exist.
            return Ok(false);
        };
        self.propose(ClusterOp::DeleteCollection { name }).await?;
        Ok(true)
    }

    pub async fn update_aliases(&self, actions: Vec<AliasAction>) -> Result<()> {
        self.propose(ClusterOp::UpdateAliases { actions }).await
    }

    pub fn list_collections(&self) -> Vec<String> {
        self.consensus.state().collections.keys().cloned().collect()
    }

    pub fn collection_exists(&self, name_or_alias: &str) -> bool {
        self.consensus.state().resolve(name_or_alias).is_some()
    }

    pub async fn collection_info(&self, name_or_alias: &str) -> Result<CollectionInfo> {
        let collection = self.collection(name_or_alias)?;
        let stats = tokio::task::spawn_blocking({
            let collection = collection.clone();
            move || collection.stats()
        })
        .await
        .map_err(Error::service)?;
        Ok(CollectionInfo {
            // Qdrant's colours: yellow while segments are being indexed or merged.
            status: if stats.optimizing { "yellow" } else { "green" },
            optimizer_status: "ok",
            indexed_vectors_count: stats.indexed_vectors_count,
            points_count: stats.points_count,
            segments_count: stats.segments_count,
            config: collection.config(),
            payload_schema: serde_json::Map::new(),
        })
    }

    /// Where the collection's shard replicas are and in which state, as this peer sees it.
    pub async fn collection_cluster_info(
        &self,
        name_or_alias: &str,
    ) -> Result<CollectionClusterInfo> {
        let collection = self.collection(name_or_alias)?;
        let state = self.consensus.state();
        let shards = state
            .collections
            .get(collection.name())
            .map(|c| c.shards.clone())
            .ok_or_else(|| Error::collection_not_found(name_or_alias))?;
        let me = self.consensus.peer_id();
        let counts = tokio::task::spawn_blocking({
            let collection = collection.clone();
            move || {
                collection
                    .local_shards()
                    .iter()
                    .map(|(id, shard)| (*id, shard.info().points_count))
                    .collect::<std::collections::BTreeMap<_, _>>()
            }
        })
        .await
        .map_err(Error::service)?;
        let mut info = CollectionClusterInfo {
            peer_id: me,
            shard_count: shards.len(),
            local_shards: Vec::new(),
            remote_shards: Vec::new(),
            shard_transfers: self.shard_transfers(collection.name()),
        };
        for (shard_id, replicas) in shards {
            for (peer_id, state) in replicas {
                if peer_id == me {
                    info.local_shards.push(LocalShardInfo {
                        shard_id,
                        points_count: counts.get(&shard_id).copied().unwrap_or(0),
                        state,
                        consistency_check: self
                            .consistency_reports
                            .get(collection.name(), shard_id),
                    });
                } else {
                    info.remote_shards.push(RemoteShardInfo {
                        shard_id,
                        peer_id,
                        state,
                    });
                }
            }
        }
        Ok(info)
    }

    /// Every alias, or those of one collection (given by name or alias).
    pub fn list_aliases(&self, collection: Option<&str>) -> Result<Vec<AliasDescription>> {
        let state = self.consensus.state();
        let target = match collection {
            Some(name) => Some(
                state
                    .resolve(name)
                    .ok_or_else(|| Error::collection_not_found(name))?
                    .to_string(),
            ),
            None => None,
        };
        Ok(state
            .aliases
            .iter()
            .filter(|(_, c)| target.as_ref().is_none_or(|t| t == *c))
            .map(|(alias, c)| AliasDescription {
                alias_name: alias.clone(),
                collection_name: c.clone(),
            })
            .collect())
    }

    fn real_name(&self, name_or_alias: &str) -> Result<String> {
        let state = self.consensus.state();
        state
            .resolve(name_or_alias)
            .map(str::to_string)
            .ok_or_else(|| Error::collection_not_found(name_or_alias))
    }
}
