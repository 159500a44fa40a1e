//! shoal: a clustered vector database node that speaks Qdrant's public API.
//!
//! The map, top down (edges only point down):
//! - [`api`]: REST (and later gRPC) front doors; parse, validate, shape answers.
//! - [`node`]: what a peer can do; metadata ops go through [`consensus`], point ops
//!   straight to [`collection`]s.
//! - [`consensus`]: the Raft group holding the cluster metadata; a pure state machine
//!   plus the driver that owns raft-rs's `RawNode`.
//! - [`collection`]: configuration, point shapes, routing of points to shards.
//! - [`replication`]: shard placement, replica sets, calls to other peers' replicas.
//! - [`shard`]: the storage engine of one shard: WAL, immutable segments, search.
//! - [`transport`]: the peer-to-peer wire (Raft messages out, the join handshake).
//! - [`settings`], [`error`], [`types`], [`metrics`]: shared by all.
pub mod api;
pub mod cli;
pub mod collection;
pub mod consensus;
pub mod error;
pub mod metrics;
pub mod node;
pub mod replication;
pub mod settings;
pub mod shard;
pub mod snapshot;
pub mod transport;
pub mod types;
