//! Qdrant's response envelope: `{"result": .., "status": "ok", "time": seconds}` on
//! success and `{"status": {"error": ".."}, "time": ..}` on errors.
//!
//! `time` is measured from the moment the request entered the router: a middleware
//! stores the start instant in a task-local that every response reads, so handlers and
//! error conversions never carry a timer around.

use std::time::Instant;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;

tokio::task_local! {
    static REQUEST_START: Instant;
}

/// Middleware: runs the rest of the stack with the request's start time in scope.
pub async fn track_time(request: Request, next: Next) -> Response {
    REQUEST_START.scope(Instant::now(), next.run(request)).await
}

/// Seconds since the request started (0 outside a request).
pub fn elapsed() -> f64 {
    REQUEST_START
        .try_with(|start| start.elapsed().as_secs_f64())
        .unwrap_or(0.0)
}

/// A successful answer with a `result`.
pub struct Success<T>(pub T);

impl<T: Serialize> IntoResponse for Success<T> {
    fn into_response(self) -> Response {
        Json(json!({"result": self.0, "status": "ok", "time": elapsed()})).into_response()
    }
}

/// An error envelope with the given status.
pub fn error_response(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"status": {"error": message}, "time": elapsed()})),
    )
        .into_response()
}
