//! What applying a committed op asks this peer to do outside the pure state: create or
//! drop local shards, reconfigure them. The node's applier executes effects in log
//! order; each effect carries all it needs, so it never reads a state that has moved on.
//! Effects are idempotent: after a crash, start-up reconciles storage with the state.

use std::collections::BTreeMap;

use crate::collection::config::CollectionConfig;
use crate::types::{PeerId, ShardId};

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A collection now exists; open the shards placed on this peer.
    CollectionCreated {
        name: String,
        config: CollectionConfig,
        placement: BTreeMap<ShardId, Vec<PeerId>>,
    },
    /// A collection's configuration changed.
    CollectionUpdated {
        name: String,
        config: CollectionConfig,
    },
    /// A collection is gone; drop its local shards and files.
    CollectionDeleted { name: String },
    /// `peer` now holds a replica of the shard: that peer opens it.
    ReplicaAdded {
        collection: String,
        shard: ShardId,
        peer: PeerId,
    },
    /// `peer` no longer holds a replica of the shard: that peer closes it and deletes its files.
    ReplicaRemoved {
        collection: String,
        shard: ShardId,
        peer: PeerId,
    },
}
