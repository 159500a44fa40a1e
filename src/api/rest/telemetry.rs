//! Monitoring routes: `GET /metrics` (Prometheus text format), `GET /telemetry`,
//! `GET /cluster/telemetry`, `GET` and `DELETE /issues`; and [`record_response`], the
//! middleware that counts every REST response by method, route template and status.
//!
//! Each handler reads published state and atomics only (see `node/telemetry.rs`), so
//! they answer while a collection is busy or being recovered.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use super::envelope::Success;
use super::extract::Query;
use crate::metrics::exposition::CONTENT_TYPE as PROMETHEUS_TEXT;
use crate::metrics::ResponseKey;
use crate::node::telemetry::TelemetryRequest;
use crate::node::Node;

pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/telemetry", get(telemetry))
        .route("/cluster/telemetry", get(cluster_telemetry))
        .route("/issues", get(issues).delete(clear_issues))
}

/// Middleware: records the response under its route template (`/collections/{name}`),
/// never the raw path; requests that matched no route count as `unmatched`.
pub async fn record_response(
    State(node): State<Arc<Node>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_string();
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    let key = ResponseKey {
        method,
        endpoint,
        status: response.status().as_u16(),
    };
    node.metrics.rest.record(key, started.elapsed());
    response
}

#[derive(Deserialize)]
struct MetricsParams {
    #[serde(default)]
    per_collection: bool,
    #[serde(default)]
    anonymize: bool,
    /// Accepted as Qdrant does; the answer never waits, so there is nothing to bound.
    #[serde(default)]
    #[allow(dead_code)]
    timeout: Option<u64>,
}

async fn metrics(State(node): State<Arc<Node>>, Query(params): Query<MetricsParams>) -> Response {
    let text = node.metrics_text(params.per_collection, params.anonymize);
    ([(CONTENT_TYPE, PROMETHEUS_TEXT)], text).into_response()
}

#[derive(Deserialize)]
struct TelemetryParams {
    #[serde(default)]
    details_level: Option<u32>,
    #[serde(default)]
    anonymize: Option<bool>,
    /// Accepted as Qdrant does; the answer never waits.
    #[serde(default)]
    #[allow(dead_code)]
    timeout: Option<u64>,
}

async fn telemetry(
    State(node): State<Arc<Node>>,
    Query(params): Query<TelemetryParams>,
) -> Success<Value> {
    Success(node.telemetry(TelemetryRequest {
        details_level: params.details_level.unwrap_or(0),
        anonymize: params.anonymize.unwrap_or(false),
    }))
}

async fn cluster_telemetry(
    State(node): State<Arc<Node>>,
    Query(params): Query<TelemetryParams>,
) -> Success<Value> {
    Success(node.cluster_telemetry(params.details_level.unwrap_or(0)))
}

async fn issues(State(node): State<Arc<Node>>) -> Success<Value> {
    Success(json!({"issues": node.issues()}))
}

async fn clear_issues(State(node): State<Arc<Node>>) -> Success<bool> {
    node.clear_issues();
    Success(true)
}
