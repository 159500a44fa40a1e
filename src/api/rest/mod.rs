//! The REST API on `service.http_port` (6333): Qdrant's paths and JSON shapes.
//!
//! One file per resource, each exposing `routes()`; `envelope.rs` shapes answers,
//! `error.rs` is the single map from errors to statuses, `extract.rs` turns bad input
//! into Qdrant-shaped 400s.

mod auth;
mod cluster;
mod collections;
mod envelope;
mod error;
mod extract;
mod points;
mod search;
mod service;
mod shard_snapshots;
mod snapshots;
mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::api::auth::ApiKeys;
use crate::node::Node;

/// Builds the router with every route and the shared layers.
pub fn router(node: Arc<Node>) -> Router {
    let body_limit = node.settings.service.max_request_size_mb * 1024 * 1024;
    let mut app = Router::new()
        .merge(service::routes())
        .merge(cluster::routes())
        .merge(collections::routes())
        .merge(points::routes())
        .merge(search::routes())
        .merge(snapshots::routes())
        .merge(shard_snapshots::routes())
        // --- telemetry, metrics, issues (issue 13 item 2) ---
        .merge(telemetry::routes())
        // --- end telemetry ---
        .fallback(|| async {
            envelope::error_response(StatusCode::NOT_FOUND, "Not found: no such route")
        })
        .layer(DefaultBodyLimit::max(body_limit));
    if let Some(keys) = ApiKeys::from_settings(&node.settings.service) {
        app = app.layer(axum::middleware::from_fn_with_state(
            Arc::new(keys),
            auth::require_key,
        ));
    }
    app = app.layer(axum::middleware::from_fn(envelope::track_time));
    // Outermost: every response is counted, refusals of the key check included.
    app = app.layer(axum::middleware::from_fn_with_state(
        node.clone(),
        telemetry::record_response,
    ));
    if node.settings.service.enable_cors {
        app = app.layer(tower_http::cors::CorsLayer::permissive());
    }
    app.with_state(node)
}

/// Serves REST until `shutdown` is cancelled.
pub async fn serve(
    node: Arc<Node>,
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let app = router(node.clone());
    if node.settings.service.enable_tls {
        let service = &node.settings.service;
        let config = crate::api::tls::server_config(
            &node.settings.tls,
            service.verify_https_client_certificate,
        )
        .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
        tracing::info!(%addr, "REST API listening (TLS)");
        let listener = crate::api::tls::TlsListener::new(listener, config)?;
        return axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
    }
    tracing::info!(%addr, "REST API listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
