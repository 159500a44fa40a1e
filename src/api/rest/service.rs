//! Service routes: the version banner and the health probes.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::node::Node;
use crate::types::QDRANT_API_VERSION;

pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/", get(root))
        .route("/healthz", get(|| async { "healthz check passed" }))
        .route("/livez", get(|| async { "healthz check passed" }))
        .route("/readyz", get(|| async { "all shards are ready" }))
}

async fn root(State(_node): State<Arc<Node>>) -> Json<Value> {
    Json(json!({
        "title": crate::api::TITLE,
        "version": QDRANT_API_VERSION,
        "shoal_version": env!("CARGO_PKG_VERSION"),
    }))
}
