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

/// 202 for work accepted with `wait=false`; `task_id` names it in `GET /snapshot-tasks/{id}`.
pub struct Accepted(pub String);

impl IntoResponse for Accepted {
    fn into_response(self) -> Response {
        let location = format!("/snapshot-tasks/{}", self.0);
        (
            StatusCode::ACCEPTED,
            [(axum::http::header::LOCATION, location)],
            Json(json!({"status": "accepted", "time": elapsed(), "task_id": self.0})),
        )
            .into_response()
    }
}

/// A success whose envelope carries one more top-level key next to `result`, for
/// details that Qdrant's `result` shape has no room for (clients ignore the key).
pub struct SuccessWith<T, E>(pub T, pub &'static str, pub E);

impl<T: Serialize, E: Serialize> IntoResponse for SuccessWith<T, E> {
    fn into_response(self) -> Response {
        let mut body = json!({"result": self.0, "status": "ok", "time": elapsed()});
        body[self.1] = serde_json::to_value(self.2).unwrap_or(serde_json::Value::Null);
        Json(body).into_response()
    }
}

/// Answers a job's outcome: its result, or 202 with the task id.
pub fn task_answer<T: Serialize>(outcome: crate::node::tasks::TaskOutcome<T>) -> Response {
    match outcome {
        crate::node::tasks::TaskOutcome::Finished(value) => Success(value).into_response(),
        crate::node::tasks::TaskOutcome::Accepted(id) => Accepted(id).into_response(),
    }
}

/// Answers a recovery: Qdrant's `result` (`true`, or `null` for a shard upload) plus a
/// `recovery` object saying what happened per shard, or 202 with the task id.
pub fn recovery_answer(
    result: serde_json::Value,
    outcome: crate::node::tasks::TaskOutcome<crate::node::snapshots::RecoveryReport>,
) -> Response {
    match outcome {
        crate::node::tasks::TaskOutcome::Finished(report) => {
            SuccessWith(result, "recovery", report).into_response()
        }
        crate::node::tasks::TaskOutcome::Accepted(id) => Accepted(id).into_response(),
    }
}
