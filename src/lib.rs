//! shoal: a clustered vector database node that speaks Qdrant's public API.
pub mod collection;
pub mod consensus;
pub mod error;
pub mod shard;
pub mod types;
