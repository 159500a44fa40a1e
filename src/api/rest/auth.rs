//! REST side of the API key check: a middleware that sees only the method, path and
//! headers, so a refused request (an upload included) is answered before its body is
//! read. What each route needs is decided in [`crate::api::auth`].

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::api::auth::{rest_access, ApiKeys};

pub async fn require_key(
    State(keys): State<Arc<ApiKeys>>,
    request: Request,
    next: Next,
) -> Response {
    let needed = rest_access(request.method(), request.uri().path());
    match keys.check(request.headers(), needed) {
        Ok(()) => next.run(request).await,
        Err(err) => ApiError(err).into_response(),
    }
}
