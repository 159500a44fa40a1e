//! Service routes: the version banner and the health probes.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::node::Node;

/// The Qdrant API version shoal implements; clients compare it with their own.
pub const QDRANT_API_VERSION: &str = "1.19.0";

pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/", get(root))
        .route("/healthz", get(|| async { "healthz check passed" }))
        .route("/livez", get(|| async { "healthz check passed" }))
        .route("/readyz", get(|| async { "all shards are ready" }))
}

async fn root(State(_node): State<Arc<Node>>) -> Json<Value> {
    Json(json!({
        "title": "shoal - vector search engine (Qdrant API compatible)",
        "version": QDRANT_API_VERSION,
        "shoal_version": env!("CARGO_PKG_VERSION"),
    }))
}
