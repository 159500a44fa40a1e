//! REST errors: the error envelope with the status from the one table in
//! `api/errors.rs`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::envelope::error_response;
use crate::error::Error;

/// An error on its way out of a REST handler.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        ApiError(err)
    }
}

/// The HTTP status of an error (from the one table in `api/errors.rs`).
pub fn status_of(err: &Error) -> StatusCode {
    crate::api::errors::http_status(err)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(&self.0);
        if status.is_server_error() {
            tracing::error!(error = %self.0, "request failed");
        }
        error_response(status, &self.0.to_string())
    }
}

/// What every REST handler returns.
pub type ApiResult<T> = Result<T, ApiError>;
