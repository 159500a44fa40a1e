//! The only layer that knows about transports. It parses, validates and converts
//! requests, calls the [`crate::node::Node`], and wraps answers and errors in each
//! protocol's shape. It never touches files.
//!
//! `rest/` (6333) and `grpc/` (6334) are the public APIs; both call the same node
//! methods, map errors through the one table in `errors.rs`, check API keys with
//! `auth.rs` and use `tls.rs` when TLS is on. `peer.rs` (6335) carries only
//! peer-to-peer traffic, behind the cluster secret and TLS of `peer_auth.rs`.
pub mod auth;
pub mod errors;
pub mod grpc;
pub mod peer;
pub mod peer_auth;
pub mod rest;
pub mod tls;

/// The `title` of `GET /` and of the gRPC health check.
pub const TITLE: &str = "shoal - vector search engine (Qdrant API compatible)";
