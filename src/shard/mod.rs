//! A local shard: the storage engine for one shard's points on this peer.
pub mod distance;
pub mod hnsw;
