//! PLACEHOLDER (consensus branch): the metadata operations that go through Raft.
//!
//! The integrator replaces this file with the real `ClusterOp` (collections, aliases, shard
//! placement, ...). The driver only needs `ClusterOp: Serialize + DeserializeOwned`; committed
//! entries carry it as JSON.

use serde::{Deserialize, Serialize};

/// A metadata operation, proposed to Raft and applied in log order on every peer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum ClusterOp {
    /// Sets `key` to `value`.
    Put { key: String, value: String },
    /// Always fails with a user error carrying `msg` (exercises the "user error is applied" path).
    Fail { msg: String },
}
