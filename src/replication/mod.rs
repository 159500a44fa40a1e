//! Replication of point data: where a collection's shards live, which replicas of a shard
//! take a write or answer a read, and the peer-to-peer calls that reach replicas on other
//! peers.
//!
//! Point data never goes through Raft. Consensus only records *where* each shard's
//! replicas are and *what state* each one is in (`ReplicaState`); the node (see
//! `node/replicas.rs`) reads that, sends a write to every replica of the point's shard
//! that is not Dead and a read to one Active replica, and reports a replica that failed a
//! write to consensus so that it is marked Dead on every peer.
//!
//! - [`placement`]: the pure choice of peers for a new collection's shards.
//! - [`replica_set`]: the pure choice of replicas for one write or read of one shard.
//! - [`wire`]: the serde payloads of the peer calls and the one function that runs a read
//!   on a local shard (used for local and remote reads alike).
//! - [`remote`]: the client of the peer service `Shards` (timeouts, cached channels).
//! - [`consistency`]: the pure comparison of a shard's replicas by their digests, and the
//!   reports of the latest checks (the periodic check runs in `node/consistency.rs`).
//! - [`inflight`]: the writes on their way to replicas, by the cluster state that routed
//!   them, so a transfer can wait for those that skip its target (`Shards.Drain`).

pub mod consistency;
pub mod inflight;
pub mod placement;
pub mod remote;
pub mod replica_set;
pub mod wire;
